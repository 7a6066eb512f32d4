"""Benchmark LCN against nn.GroupNorm measured in the same run, as ratios.

Reports forward and forward+backward time and the bytes autograd saves for backward, for
backbone/FPN shapes with 8 and 2 channels per group, LCN time across windows (flatness) and
across image sizes (linear in pixels), and optionally a Mask R-CNN R50-FPN training step with
LCN vs GN in every norm slot. Times are medians over interleaved repetitions (GN and LCN
alternate, so machine noise hits both). Prints markdown tables and writes plots.

    python tools/analysis_tools/benchmark_norms.py --threads 2 --out docs/benchmarks
    python tools/analysis_tools/benchmark_norms.py --quick            # small shapes, a few seconds
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from lcn_mm.ops import gpu, local_context_norm, native  # noqa: E402

Shape = Tuple[int, int, int, int]

# (label, shape, groups): the targets plus typical backbone/FPN levels.
SHAPES: List[Tuple[str, Shape, int]] = [
    ('C2/P2 800x1333 /4, cpg 8', (2, 256, 200, 336), 32),
    ('cpg 2, 256x256', (2, 64, 256, 256), 32),
    ('C3 /8, cpg 16', (2, 512, 100, 168), 32),
    ('C4 /16, cpg 32', (2, 1024, 50, 84), 32),
    ('FPN P5 /32, cpg 8', (2, 256, 25, 42), 32),
]
QUICK_SHAPES: List[Tuple[str, Shape, int]] = [
    ('small cpg 8', (2, 64, 64, 96), 8), ('small cpg 2', (2, 16, 64, 64), 8)]
WINDOWS = [3, 7, 15, 31, 63, 127, 255]


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


STAT = statistics.median


def compare(fns: Dict[str, Callable[[], None]], reps: int) -> Dict[str, float]:
    """Seconds per function (median, or min with --stat min), repetitions interleaved
    after one warm-up each."""
    for fn in fns.values():
        fn()
    samples: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            samples[name].append(timed(fn))
    return {k: STAT(v) for k, v in samples.items()}


def saved_bytes(fn: Callable[[], torch.Tensor]) -> int:
    """Bytes of distinct storages autograd saves for backward during ``fn()``."""
    storages: Dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return sum(storages.values())


def norm_fns(shape: Shape, groups: int, window: int, device: str, dtype: torch.dtype):
    x = torch.randn(shape, device=device, dtype=dtype, requires_grad=True)
    c = shape[1]
    # Affine parameters in the input's dtype: GroupNorm's kernels require it for bf16/fp16.
    weight = torch.ones(c, device=device, dtype=dtype, requires_grad=True)
    bias = torch.zeros(c, device=device, dtype=dtype, requires_grad=True)
    grad = torch.randn(shape, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)

    def gn() -> torch.Tensor:
        return F.group_norm(x, groups, weight, bias, 1e-5)

    def lcn() -> torch.Tensor:
        return local_context_norm(x, groups, window, weight, bias)

    def fwd(f):
        def run():
            with torch.no_grad():
                f()
            sync()
        return run

    def fwd_bwd(f):
        def run():
            torch.autograd.grad(f(), (x, weight, bias), grad)
            sync()
        return run

    return gn, lcn, fwd, fwd_bwd


def bench_shapes(shapes, window: int, reps: int, device: str, dtype: torch.dtype) -> List[dict]:
    rows = []
    for label, shape, groups in shapes:
        gn, lcn, fwd, fwd_bwd = norm_fns(shape, groups, window, device, dtype)
        t_f = compare({'gn': fwd(gn), 'lcn': fwd(lcn)}, reps)
        t_fb = compare({'gn': fwd_bwd(gn), 'lcn': fwd_bwd(lcn)}, reps)
        mem_gn, mem_lcn = saved_bytes(gn), saved_bytes(lcn)
        rows.append(dict(label=label, shape=list(shape), groups=groups, window=window,
                         gn_fwd_ms=1e3 * t_f['gn'], lcn_fwd_ms=1e3 * t_f['lcn'],
                         fwd_ratio=t_f['lcn'] / t_f['gn'],
                         gn_fwdbwd_ms=1e3 * t_fb['gn'], lcn_fwdbwd_ms=1e3 * t_fb['lcn'],
                         fwdbwd_ratio=t_fb['lcn'] / t_fb['gn'],
                         saved_mb_gn=mem_gn / 2**20, saved_mb_lcn=mem_lcn / 2**20,
                         saved_ratio=mem_lcn / mem_gn))
        print(f"  {label}: fwd {rows[-1]['fwd_ratio']:.2f}x, fwd+bwd "
              f"{rows[-1]['fwdbwd_ratio']:.2f}x, saved {rows[-1]['saved_ratio']:.2f}x",
              flush=True)
    return rows


def bench_windows(shape: Shape, groups: int, windows: List[int], reps: int, device: str,
                  dtype: torch.dtype) -> List[dict]:
    fns = {}
    for k in windows:
        gn, lcn, _, fwd_bwd = norm_fns(shape, groups, k, device, dtype)
        fns[k] = fwd_bwd(lcn)
    fns['gn'] = fwd_bwd(gn)
    times = compare(fns, reps)
    return [dict(window=k, fwdbwd_ms=1e3 * times[k], gn_fwdbwd_ms=1e3 * times['gn'])
            for k in windows]


def bench_sizes(channels: int, groups: int, sizes: List[int], window: int, reps: int,
                device: str, dtype: torch.dtype) -> List[dict]:
    rows = []
    for s in sizes:
        gn, lcn, _, fwd_bwd = norm_fns((1, channels, s, s), groups, window, device, dtype)
        t = compare({'gn': fwd_bwd(gn), 'lcn': fwd_bwd(lcn)}, reps)
        rows.append(dict(size=s, pixels=s * s, lcn_fwdbwd_ms=1e3 * t['lcn'],
                         gn_fwdbwd_ms=1e3 * t['gn']))
    return rows


def bench_mask_rcnn(reps: int, size: int) -> Optional[dict]:
    """One Mask R-CNN R50-FPN training step (batch 2), GN-all vs LCN-all configs of configs/."""
    try:
        from lcn_mm.apis.config import load_config
        from lcn_mm.testing import build_model, demo_batch, loss_step
    except ImportError as err:
        print(f'  skipped Mask R-CNN step: {err}')
        return None
    from lcn_mm.apis.checkpoint import convert_state_dict
    root = Path(__file__).resolve().parents[2] / 'configs' / 'mmdet'
    steps, models = {}, {}
    for norm in ('gn', 'lcn'):
        cfg = load_config(str(root / f'mask-rcnn_r50_fpn_{norm}-all_2x_coco.py'))
        models[norm] = build_model(cfg, init=norm == 'gn')
    # Same weights and data, so both models see the same proposals as far as possible.
    models['lcn'].load_state_dict(convert_state_dict(models['gn'].state_dict()).state_dict)
    torch.manual_seed(0)
    batch = demo_batch(cfg, size=size, batch_size=2)
    for norm, model in models.items():
        def run(model=model) -> None:
            loss_step(model, batch)
            model.zero_grad(set_to_none=True)
        steps[norm] = run
    counts = {'lcn': sum(type(m).__name__ == 'LCN' for m in models['lcn'].modules())}
    t = compare(steps, reps)
    return dict(size=size, lcn_layers=counts['lcn'], gn_step_s=t['gn'], lcn_step_s=t['lcn'],
                ratio=t['lcn'] / t['gn'])


def bench_torchvision_mask_rcnn(reps: int, size: int, device: str) -> Optional[dict]:
    """torchvision's Mask R-CNN R50-FPN v2 training step (batch 2) with every BatchNorm
    replaced by GroupNorm(32) or LCN(32 groups, window 63): the same step without mmcv's
    compiled ops, so it also runs where only PyTorch and torchvision are installed (GPUs)."""
    try:
        import torchvision
        from torchvision.ops.misc import FrozenBatchNorm2d
    except ImportError as err:
        print(f'  skipped torchvision Mask R-CNN step: {err}')
        return None
    from lcn_mm.layers import LCN

    def swap(module: torch.nn.Module, make) -> int:
        count = 0
        for name, child in module.named_children():
            if isinstance(child, (torch.nn.BatchNorm2d, FrozenBatchNorm2d)):
                setattr(module, name, make(child.weight.shape[0]))
                count += 1
            else:
                count += swap(child, make)
        return count

    models, counts = {}, {}
    for norm, make in (('gn', lambda c: torch.nn.GroupNorm(32, c)),
                       ('lcn', lambda c: LCN(c, num_groups=32, window_size=63))):
        torch.manual_seed(0)
        model = torchvision.models.detection.maskrcnn_resnet50_fpn_v2(
            weights=None, weights_backbone=None, num_classes=2, min_size=size, max_size=size)
        counts[norm] = swap(model, make)
        models[norm] = model.to(device).train()
    models['lcn'].load_state_dict(models['gn'].state_dict())  # same weights
    gen = torch.Generator().manual_seed(0)
    images, targets = [], []
    for _ in range(2):
        boxes = torch.tensor([[40., 60., 200., 180.], [300., 250., 420., 400.],
                              [100., 300., 180., 460.]]) * size / 512
        masks = torch.zeros(3, size, size, dtype=torch.uint8)
        for m, b in zip(masks, boxes.long()):
            m[b[1]:b[3], b[0]:b[2]] = 1
        images.append(torch.rand(3, size, size, generator=gen).to(device))
        targets.append(dict(boxes=boxes.to(device),
                            labels=torch.ones(3, dtype=torch.long, device=device),
                            masks=masks.to(device)))
    sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
    steps = {}
    for norm, model in models.items():
        def run(model=model) -> None:
            sum(model(images, targets).values()).backward()
            model.zero_grad(set_to_none=True)
            sync()
        steps[norm] = run
    t = compare(steps, reps)
    return dict(size=size, lcn_layers=counts['lcn'], gn_step_s=t['gn'], lcn_step_s=t['lcn'],
                ratio=t['lcn'] / t['gn'])


def table(rows: List[dict], cols: List[Tuple[str, str, str]]) -> str:
    head = '| ' + ' | '.join(c[1] for c in cols) + ' |'
    sep = '|' + '|'.join('---' for _ in cols) + '|'
    body = ['| ' + ' | '.join(format(r[c[0]], c[2]) for c in cols) + ' |' for r in rows]
    return '\n'.join([head, sep] + body)


def plot(windows: List[dict], sizes: List[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot([r['window'] for r in windows], [r['fwdbwd_ms'] for r in windows], 'o-', label='LCN')
    a.axhline(windows[0]['gn_fwdbwd_ms'], color='gray', ls='--', label='GroupNorm')
    a.set(xscale='log', xlabel='window size (pixels)', ylabel='forward+backward (ms)',
          title='time vs window', ylim=(0, None))
    a.legend()
    b.plot([r['pixels'] for r in sizes], [r['lcn_fwdbwd_ms'] for r in sizes], 'o-', label='LCN')
    b.plot([r['pixels'] for r in sizes], [r['gn_fwdbwd_ms'] for r in sizes], 's--',
           color='gray', label='GroupNorm')
    b.set(xlabel='pixels per map', ylabel='forward+backward (ms)', title='time vs image size')
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f'wrote {path}')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--dtype', default='float32', choices=['float32', 'bfloat16', 'float16'])
    ap.add_argument('--reps', type=int, default=5)
    ap.add_argument('--stat', choices=['median', 'min'], default='median',
                    help='summary of the repetitions; min is robust to other load on the machine')
    ap.add_argument('--window', type=int, default=31, help='window for the shape table')
    ap.add_argument('--quick', action='store_true', help='small shapes only')
    ap.add_argument('--shapes', type=int, default=len(SHAPES),
                    help='benchmark only the first N shapes of the table (the first is the target)')
    ap.add_argument('--no-sizes', action='store_true', help='skip the image-size sweep')
    ap.add_argument('--reference', action='store_true',
                    help='time the pure-PyTorch path instead of the fused kernels')
    ap.add_argument('--mask-rcnn', type=int, default=0, metavar='SIZE',
                    help='also time a Mask R-CNN R50-FPN training step at SIZExSIZE (0: skip)')
    ap.add_argument('--tv-mask-rcnn', type=int, default=0, metavar='SIZE',
                    help="also time torchvision's Mask R-CNN R50-FPN v2 step (BN swapped for "
                         'GN or LCN) at SIZExSIZE; needs torchvision, not mmcv (0: skip)')
    ap.add_argument('--out', type=Path, help='folder for results.json, results.md, the plot')
    args = ap.parse_args()

    t0 = time.perf_counter()
    global STAT
    STAT = min if args.stat == 'min' else statistics.median
    torch.set_num_threads(args.threads)
    if args.reference:
        native.supports = lambda x: False  # type: ignore[assignment]
        gpu.supports = lambda x: False  # type: ignore[assignment]
    dtype = getattr(torch, args.dtype)
    if args.reference:
        path = 'pure PyTorch'
    elif args.device == 'cpu':
        path = 'fused CPU kernels' if native.library() is not None else 'pure PyTorch (no compiler)'
    else:
        path = 'Triton kernels' if gpu.kernels() is not None else 'pure PyTorch (no Triton)'
    machine = (torch.cuda.get_device_name() if args.device == 'cuda'
               else f'{platform.processor() or platform.machine()}, {args.threads} threads')
    print(f'# LCN vs GroupNorm: {args.device} {args.dtype}, {machine}, LCN path: {path}, '
          f'torch {torch.__version__}')
    shapes = QUICK_SHAPES if args.quick else SHAPES[:max(1, args.shapes)]
    print('shapes:')
    rows = bench_shapes(shapes, args.window, args.reps, args.device, dtype)
    main_shape, main_groups = shapes[0][1], shapes[0][2]
    print('windows:')
    wins = bench_windows(main_shape, main_groups, WINDOWS if not args.quick else [3, 31, 255],
                         args.reps, args.device, dtype)
    flat = [r['fwdbwd_ms'] for r in wins if r['window'] in (3, 31, 255)]
    print('sizes:')
    sizes = [] if args.no_sizes else bench_sizes(
        64, 32, [64, 128, 256, 512] if args.quick else [128, 256, 512, 1024], 31, args.reps,
        args.device, dtype)
    mrcnn = bench_mask_rcnn(max(2, args.reps // 2), args.mask_rcnn) if args.mask_rcnn else None
    tv = (bench_torchvision_mask_rcnn(max(2, args.reps // 2), args.tv_mask_rcnn, args.device)
          if args.tv_mask_rcnn else None)

    ms = '.3f' if args.device == 'cuda' else '.1f'  # GPU times are fractions of a ms
    md = [f'LCN path: {path}; {args.device} {args.dtype}; {machine}; torch {torch.__version__}; '
          f'window {args.window} for the shape table; {args.stat} of {args.reps} interleaved reps.',
          '', table(rows, [('label', 'shape (N,C,H,W)', ''), ('groups', 'G', 'd'),
                           ('gn_fwd_ms', 'GN fwd ms', ms), ('lcn_fwd_ms', 'LCN fwd ms', ms),
                           ('fwd_ratio', 'fwd ratio', '.2f'),
                           ('gn_fwdbwd_ms', 'GN fwd+bwd ms', ms),
                           ('lcn_fwdbwd_ms', 'LCN fwd+bwd ms', ms),
                           ('fwdbwd_ratio', 'fwd+bwd ratio', '.2f'),
                           ('saved_ratio', 'saved-bytes ratio', '.2f')]),
          '', f'Windows at {tuple(main_shape)}, G={main_groups} (forward+backward):', '',
          table(wins, [('window', 'window', 'd'), ('fwdbwd_ms', 'LCN ms', ms),
                       ('gn_fwdbwd_ms', 'GN ms', ms)]),
          '', f'max/min over windows 3, 31, 255: {max(flat) / min(flat):.3f}']
    if sizes:
        md += ['', 'Image size (N=1, C=64, G=32, window 31, forward+backward):', '',
               table(sizes, [('size', 'H=W', 'd'), ('pixels', 'pixels', 'd'),
                             ('lcn_fwdbwd_ms', 'LCN ms', ms), ('gn_fwdbwd_ms', 'GN ms', ms)])]
    if mrcnn:
        md += ['', f"Mask R-CNN R50-FPN training step, batch 2 at {mrcnn['size']}px, "
               f"{mrcnn['lcn_layers']} LCN layers: "
               f"GN {mrcnn['gn_step_s']:.2f} s, LCN {mrcnn['lcn_step_s']:.2f} s, "
               f"ratio {mrcnn['ratio']:.3f}"]
    if tv:
        md += ['', f"torchvision Mask R-CNN R50-FPN v2 training step, batch 2 at {tv['size']}px, "
               f"{tv['lcn_layers']} norm layers swapped: GN {1e3 * tv['gn_step_s']:.1f} ms, "
               f"LCN {1e3 * tv['lcn_step_s']:.1f} ms, ratio {tv['ratio']:.3f}"]
    text = '\n'.join(md)
    print()
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / 'results.md').write_text(text + '\n')
        (args.out / 'results.json').write_text(json.dumps(
            dict(machine=machine, path=path, argv=sys.argv[1:], shapes=rows, windows=wins,
                 sizes=sizes, mask_rcnn=mrcnn, tv_mask_rcnn=tv), indent=1) + '\n')
        if sizes:
            plot(wins, sizes, args.out / 'lcn_time_vs_window_and_size.png')
    print(f'total benchmark time {time.perf_counter() - t0:.0f} s')


if __name__ == '__main__':
    os.environ.setdefault('OMP_NUM_THREADS', '2')
    main()
