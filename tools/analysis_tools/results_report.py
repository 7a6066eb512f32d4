#!/usr/bin/env python
"""Regenerate the results tables of docs/results.md and the README, and the plots, from the
committed records in docs/results/*.jsonl.

    python tools/analysis_tools/results_report.py           # rewrite the tables and plots
    python tools/analysis_tools/results_report.py --check   # exit 1 if a document differs

Each table sits between ``<!-- results:NAME:begin -->`` and ``<!-- results:NAME:end -->`` in
its document. ``--check`` compares the tables only: it renders the plots into a scratch folder
(a document links a plot when the records give one) but does not compare PNG bytes, which
change with matplotlib and font versions. Logic: projects/aerial_demo/aerial_demo/report.py.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'projects/aerial_demo'))
from aerial_demo.report import first_difference, render_blocks, replace_blocks  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--check', action='store_true',
                   help='write nothing; exit 1 naming the document and its first line that '
                   'differs from what the records give')
    p.add_argument('--root', type=Path, default=ROOT, help='repository root (tests)')
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        figures = Path(scratch) if args.check else args.root / 'docs/figures'
        docs = render_blocks(args.root, figures)
        stale = []
        for doc, blocks in docs.items():
            path = args.root / doc
            old = path.read_text()
            new = replace_blocks(old, blocks, doc)
            if new == old:
                continue
            if args.check:
                line, have, want = first_difference(old, new)
                stale.append(f'{doc}:{line}: differs from the records\n'
                             f'  document:  {have}\n  generated: {want}')
            else:
                path.write_text(new)
                print(f'updated {doc}')
    if stale:
        print('\n'.join(stale) + '\nrun: python tools/analysis_tools/results_report.py',
              file=sys.stderr)
        return 1
    print('documents match the records' if args.check else 'tables and plots regenerated')
    return 0


if __name__ == '__main__':
    sys.exit(main())
