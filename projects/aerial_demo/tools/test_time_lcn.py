#!/usr/bin/env python
"""Test-time local normalization on whole scenes (issue #16, item 5).

Each GN-trained segmentation run of the study (docs/results/study.jsonl, checkpoint on this
machine) is evaluated on the whole stitched scene (buildings: Atlanta 900x900; roads: Las
Vegas 1300x1300), once as GN and once per window k with every GN replaced by LCN(k) at test
time only (same groups, same weights); LCN-trained runs are evaluated as trained, next to them.
One JSON line per (run, evaluated norm) is appended to --out; recorded ones are skipped.

    python projects/aerial_demo/tools/test_time_lcn.py --tasks seg --windows 7 15 31 63 127
    python tools/analysis_tools/results_report.py   # test-time LCN table in docs/results.md
"""
import argparse
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # aerial_demo
import lcn_mm  # noqa: F401,E402
from aerial_demo.robustness import SCENES, TEST_TIME_LCN_RESULTS, test_time_lcn  # noqa: E402
from aerial_demo.study import STUDY_RESULTS, load_results  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--tasks', nargs='+', default=['seg'], choices=list(SCENES))
    p.add_argument('--windows', nargs='+', type=int, default=[7, 15, 31, 63, 127])
    p.add_argument('--results', default=STUDY_RESULTS, help='study records')
    p.add_argument('--out', default=TEST_TIME_LCN_RESULTS)
    p.add_argument('--threads', type=int, default=1)
    args = p.parse_args(argv)
    warnings.filterwarnings('ignore', category=UserWarning)
    records = [r for r in load_results(args.results)
               if r['task'] in args.tasks and not r.get('tag')]
    new = test_time_lcn(records, args.out, args.windows, args.threads)
    print(f'{len(new)} evaluations appended to {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
