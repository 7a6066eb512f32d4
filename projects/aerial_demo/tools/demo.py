#!/usr/bin/env python
"""``make demo``: train LCN models from scratch on the three aerial demo tasks, on CPU.

Tree detection (NEON, FCOS), building instance segmentation (SpaceNet, Mask R-CNN) and
road semantic segmentation (SpaceNet, Semantic FPN; --tasks seg: buildings), each through the
mmengine Runner with progress lines, evaluated on its val split (COCO bbox/segm mAP, mIoU)
and compared with a trivial baseline. Prints a table, writes ``<work-dir>/results.json`` and
``demo_results.png``.
Exits 1 if a headline metric does not beat its baseline by aerial_demo.demo.MARGIN points.

    python tools/demo.py [--tasks det inst roads] [--work-dir work_dirs/demo] [--norm GN]
"""
import argparse
from pathlib import Path
import sys
import time
import warnings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # aerial_demo
import lcn_mm  # noqa: F401
from aerial_demo import TASKS, norm_cfg_for
from aerial_demo.tasks import DEMO_TASKS
from aerial_demo.demo import format_demo_table, plot_demo, run_demo


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--tasks', nargs='+', default=DEMO_TASKS, choices=list(TASKS))
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--norm', help='train with this norm instead of the configs\' LCN '
                        '(BN GN IN LN PN LCN; settings of aerial_demo.NORMS)')
    parser.add_argument('--iters', type=int, help='override every task\'s iterations')
    parser.add_argument('--batch-size', type=int)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--val-images', type=int, help='evaluate on the first N val images')
    parser.add_argument('--threads', type=int, default=2, help='torch CPU threads')
    args = parser.parse_args(argv)
    warnings.filterwarnings('ignore', category=UserWarning)
    warnings.filterwarnings('ignore', category=FutureWarning)
    t0 = time.perf_counter()
    rows = run_demo(args.tasks, args.work_dir,
                    norm_cfg=norm_cfg_for(args.norm) if args.norm else None,
                    iters=args.iters, batch_size=args.batch_size, seed=args.seed,
                    val_images=args.val_images, threads=args.threads)
    plot = f'{args.work_dir}/demo_results.png'
    plot_demo(rows, plot)
    print('\n' + format_demo_table(rows))
    print(f'\ntotal wall time {time.perf_counter() - t0:.0f} s; plot: {plot}; '
          f'results: {args.work_dir}/results.json')
    failed = [r for r in rows if r['headline'] and not r['beats']]
    for r in failed:
        print(f"FAILED: {r['task']} {r['metric']} = {r['value']:.1f} does not beat the "
              f"{r['baseline_name']} baseline {r['baseline']:.1f} clearly", file=sys.stderr)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
