"""Float32 input-gradient accuracy of every LCN path against the float64 oracle (tests/oracle.py).

For each hard input of ``tests/oracle.py`` and its mirror images (so that constant runs such as
the nodata block come at the start or at the end of the lines: running sums then cross into
them, or start in them) and each path (fused CPU kernel, pure PyTorch, Triton under its CPU
interpreter), prints ``max|dx - dx_ref| / max|dx_ref|`` for a random output gradient (groups=1,
window 7, eps=1e-5) and writes the raw numbers as JSON. ``--root`` imports lcn_mm from another
checkout (e.g. a baseline).

    python tools/analysis_tools/lcn_grad_accuracy.py --out docs/results/lcn_grad_accuracy.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[2]
FLIPS = {'none': (), 'columns': (-1,), 'rows': (-2,), 'both': (-2, -1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--root', type=Path, default=HERE, help='checkout whose lcn_mm is tested')
    ap.add_argument('--size', type=int, default=64)
    ap.add_argument('--window', type=int, default=7)
    ap.add_argument('--paths', nargs='+', default=['cpu_kernel', 'pure', 'triton'],
                    choices=['cpu_kernel', 'pure', 'triton'])
    ap.add_argument('--out', type=Path)
    args = ap.parse_args()
    if 'triton' in args.paths:
        os.environ['TRITON_INTERPRET'] = '1'
    sys.path.insert(0, str(args.root.resolve()))
    sys.path.insert(0, str(HERE / 'tests'))
    import torch

    from lcn_mm.ops import gpu, local_context_norm, native
    from oracle import hard_maps, oracle_lcn
    torch.set_num_threads(1)
    kernel_supports, gpu_supports = native.supports, gpu.supports
    if 'triton' in args.paths:
        sys.path.insert(0, str(HERE / 'tests' / 'test_ops'))
        import test_lcn_gpu  # noqa: F401  (patches Triton's interpreter for NumPy 2)

    def use(path: str) -> None:
        native.supports = kernel_supports if path == 'cpu_kernel' else (lambda x: False)
        gpu.supports = ((lambda x: x.dtype == torch.float32 and gpu.kernels() is not None)
                        if path == 'triton' else gpu_supports)

    rows = []
    k = args.window
    for path in args.paths:
        use(path)
        for flip, dims in FLIPS.items():
            gen = torch.Generator().manual_seed(3)
            for name, x in hard_maps(args.size).items():
                x = x.flip(dims).contiguous() if dims else x
                gy = torch.randn(x.shape, generator=gen, dtype=torch.float64)
                x32, x64 = x.clone().requires_grad_(True), x.double().requires_grad_(True)
                (g32,) = torch.autograd.grad(local_context_norm(x32, 1, k), x32, gy.float())
                (g64,) = torch.autograd.grad(oracle_lcn(x64, 1, k), x64, gy)
                rel = ((g32.double() - g64).abs().max() / g64.abs().max()).item()
                rows.append(dict(path=path, flip=flip, input=name, window=k, rel_err=rel))
                print(f'{path:10s} flip={flip:7s} {name:10s} {rel:.2e}', flush=True)
    print('\n| path | worst relative gradient error | on |\n|---|---|---|')
    for path in args.paths:
        worst = max((r for r in rows if r['path'] == path), key=lambda r: r['rel_err'])
        print(f"| {path} | {worst['rel_err']:.1e} | {worst['input']}, flip {worst['flip']} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(dict(command=' '.join(sys.argv), root=str(args.root),
                                            size=args.size, rows=rows), indent=1))


if __name__ == '__main__':
    main()
