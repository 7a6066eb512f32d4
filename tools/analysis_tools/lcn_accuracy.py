"""Float32 accuracy of every LCN path against the independent float64 oracle (tests/oracle.py).

For each hard input of ``tests/oracle.py`` (offsets, steps of 1e4, nodata blocks, ramps,
outliers) and each path (fused CPU kernel, pure PyTorch, Triton under its CPU interpreter),
prints the max abs error of the normalized output (groups=1, eps=1e-5) and writes the raw
numbers as JSON. ``--root`` imports lcn_mm from another checkout (e.g. a baseline); ``--paths``
limits the paths measured.

    python tools/analysis_tools/lcn_accuracy.py --out docs/results/lcn_accuracy.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--root', type=Path, default=HERE, help='checkout whose lcn_mm is tested')
    ap.add_argument('--sizes', type=int, nargs='+', default=[256, 1024])
    ap.add_argument('--windows', type=int, nargs='+', default=[3, 7])
    ap.add_argument('--long', type=int, default=4096,
                    help='also 8 x LONG and LONG x 8 maps (long lines); 0 skips them')
    ap.add_argument('--triton-size', type=int, default=64,
                    help='map size for the Triton interpreter (slow); 0 skips that map')
    ap.add_argument('--triton-long', action=argparse.BooleanOptionalAction, default=True,
                    help='also Triton on the 8 x LONG and LONG x 8 maps (its running sums)')
    ap.add_argument('--paths', nargs='+', default=['cpu_kernel', 'pure', 'triton'],
                    choices=['cpu_kernel', 'pure', 'triton'])
    ap.add_argument('--out', type=Path)
    args = ap.parse_args()
    triton = 'triton' in args.paths and (args.triton_size or (args.triton_long and args.long))
    if triton:
        os.environ['TRITON_INTERPRET'] = '1'
    sys.path.insert(0, str(args.root.resolve()))
    sys.path.insert(0, str(HERE / 'tests'))
    import torch

    from lcn_mm.ops import gpu, local_context_norm, native
    from oracle import hard_maps, oracle_lcn
    torch.set_num_threads(1)
    kernel_supports, gpu_supports = native.supports, gpu.supports

    def use(path: str) -> None:
        native.supports = kernel_supports if path == 'cpu_kernel' else (lambda x: False)
        gpu.supports = ((lambda x: x.dtype in (torch.float32,) and gpu.kernels() is not None)
                        if path == 'triton' else gpu_supports)

    if triton:
        sys.path.insert(0, str(HERE / 'tests' / 'test_ops'))
        import test_lcn_gpu  # noqa: F401  (patches Triton's interpreter for NumPy 2)
    shapes = [(size, size) for size in args.sizes]
    if args.long:
        shapes += [(8, args.long), (args.long, 8)]
    runs = [(path, shape) for shape in shapes for path in ('cpu_kernel', 'pure')
            if path in args.paths]
    if 'triton' in args.paths:
        if args.triton_size:
            runs.append(('triton', (args.triton_size, args.triton_size)))
        if args.triton_long and args.long:
            runs += [('triton', (8, args.long)), ('triton', (args.long, 8))]
    rows = []
    for path, (h, w) in runs:
        use(path)
        size = f'{h}x{w}'
        for k in args.windows:
            for name, x in hard_maps(h, width=w).items():
                err = (local_context_norm(x, 1, k).double() - oracle_lcn(x, 1, k)).abs().max()
                rows.append(dict(path=path, size=size, window=k, input=name, err=err.item()))
                print(f'{path:10s} {size:>9s} k={k:<3d} {name:10s} {err.item():.2e}', flush=True)
    worst = {}
    for r in rows:
        key = f"{r['path']} {r['size']}"
        if r['err'] > worst.get(key, (0, ''))[0]:
            worst[key] = (r['err'], f"{r['input']} k={r['window']}")
    print('\n| path, size | worst max abs error | on |\n|---|---|---|')
    for key, (err, where) in worst.items():
        print(f'| {key} | {err:.1e} | {where} |')
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(dict(command=' '.join(sys.argv), root=str(args.root),
                                            rows=rows), indent=1))


if __name__ == '__main__':
    main()
