"""A/B speed of ``local_context_norm`` against the same op at another git revision, in one run.

The baseline's ``lcn_mm/ops`` is extracted with ``git archive`` into a temporary folder and
imported under another name, so both versions run in this process, interleaved (machine noise
hits both), on the shapes of ``tools/benchmark_norms.py``; GroupNorm is timed alongside as the
common yardstick. Prints a markdown table of fwd and fwd+bwd times and the ratio new / base.

    python tools/benchmark_ab.py --base 0258a52 --threads 2 --reps 7 --out FILE.json
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path
from types import ModuleType

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'tools'))
from benchmark_norms import QUICK_SHAPES, SHAPES, compare  # noqa: E402

from lcn_mm.ops import local_context_norm  # noqa: E402


def load_ops_at(rev: str, folder: Path) -> ModuleType:
    """``lcn_mm/ops`` of git revision ``rev`` as the package ``lcn_base_ops``."""
    blob = subprocess.run(['git', 'archive', rev, 'lcn_mm/ops'], cwd=ROOT, check=True,
                          capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(blob)) as tar:
        tar.extractall(folder, filter='data')
    init = folder / 'lcn_mm' / 'ops' / '__init__.py'
    spec = importlib.util.spec_from_file_location('lcn_base_ops', init,
                                                  submodule_search_locations=[str(init.parent)])
    module = importlib.util.module_from_spec(spec)
    sys.modules['lcn_base_ops'] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--base', default='main', help='git revision of the baseline')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--reps', type=int, default=7)
    ap.add_argument('--window', type=int, default=31)
    ap.add_argument('--quick', action='store_true', help='small shapes only')
    ap.add_argument('--out', type=Path, help='write the raw numbers as JSON')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    base_rev = subprocess.run(['git', 'rev-parse', '--short', args.base], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout.strip()
    head_rev = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout.strip()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = load_ops_at(base_rev, Path(tmp))
        impls = {'gn': lambda x, g, w, b: F.group_norm(x, g, w, b, 1e-5),
                 'base': lambda x, g, w, b: base.local_context_norm(x, g, args.window, w, b),
                 'new': lambda x, g, w, b: local_context_norm(x, g, args.window, w, b)}
        for label, shape, groups in (QUICK_SHAPES if args.quick else SHAPES):
            x = torch.randn(shape, requires_grad=True)
            w = torch.randn(shape[1], requires_grad=True)
            b = torch.randn(shape[1], requires_grad=True)
            gy = torch.randn(shape)

            def fwd(f):
                def run():
                    with torch.no_grad():
                        f(x, groups, w, b)
                return run

            def fwd_bwd(f):
                def run():
                    torch.autograd.grad(f(x, groups, w, b), (x, w, b), gy)
                return run

            t_f = compare({k: fwd(f) for k, f in impls.items()}, args.reps)
            t_fb = compare({k: fwd_bwd(f) for k, f in impls.items()}, args.reps)
            rows.append(dict(label=label, shape=list(shape), groups=groups,
                             fwd={k: v * 1e3 for k, v in t_f.items()},
                             fwd_bwd={k: v * 1e3 for k, v in t_fb.items()}))
            print(f'{label}: fwd+bwd new/base {t_fb["new"] / t_fb["base"]:.3f}', flush=True)
    print(f'\nbase {base_rev} vs new {head_rev} (working tree), window {args.window}, '
          f'{args.threads} threads, median of {args.reps}, ms\n')
    print('| shape | GN fwd | base fwd | new fwd | new/base fwd | GN f+b | base f+b | new f+b '
          '| new/base f+b |')
    print('|---|---|---|---|---|---|---|---|---|')
    for r in rows:
        f, fb = r['fwd'], r['fwd_bwd']
        print(f"| {r['label']} | {f['gn']:.1f} | {f['base']:.1f} | {f['new']:.1f} | "
              f"{f['new'] / f['base']:.3f} | {fb['gn']:.1f} | {fb['base']:.1f} | "
              f"{fb['new']:.1f} | {fb['new'] / fb['base']:.3f} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(dict(
            base=base_rev, new=head_rev, window=args.window, threads=args.threads,
            reps=args.reps, torch=torch.__version__, cpu=platform.processor(),
            rows=rows), indent=1))


if __name__ == '__main__':
    main()
