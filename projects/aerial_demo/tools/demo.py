#!/usr/bin/env python
"""``make demo``: train LCN models from scratch on the demo tasks, on CPU, and show them.

Each task trains its ``projects/aerial_demo/configs`` model through the mmengine Runner (a
progress line with ETA at least every 10 s), is evaluated on its val split (COCO mAP, mIoU)
and compared with a trivial baseline. Writes a table, ``<work-dir>/demo_results.png``, one
picture per task (ground truth | LCN prediction; for the roads also the same image under an
illumination ramp, GN-trained vs LCN-trained), and appends one JSON record per run to
``<work-dir>/runs.jsonl`` (and to ``--record FILE``). Exits 1 if a headline metric does not
beat its baseline by ``aerial_demo.demo.MARGIN`` points, saying how to rerun that task.

    python projects/aerial_demo/tools/demo.py [--tasks det nuclei roads] [--seed 0] [--norm GN]
"""
import argparse
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # aerial_demo
import lcn_mm  # noqa: F401,E402
from aerial_demo import TASKS, norm_cfg_for  # noqa: E402
from aerial_demo.demo import failure_messages, format_demo_table, plot_demo, run_demo  # noqa: E402
from aerial_demo.pictures import plot_task  # noqa: E402
from aerial_demo.tasks import DEMO_TASKS, REPO_ROOT  # noqa: E402

#: Tasks that also train a GN twin, for the illumination-ramp row of their picture.
GN_COMPARE = ('roads', )


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
    parser.add_argument('--no-pictures', action='store_true',
                        help='skip the pictures and the GN twin they need')
    parser.add_argument('--record', help='also append the run records to this JSON-lines file')
    args = parser.parse_args(argv)
    warnings.filterwarnings('ignore', category=UserWarning)
    warnings.filterwarnings('ignore', category=FutureWarning)
    os.chdir(REPO_ROOT)  # the configs' data paths are relative to the repository root
    work_dir = Path(args.work_dir).resolve() if Path(args.work_dir).is_absolute() \
        else REPO_ROOT / args.work_dir
    t0 = time.perf_counter()
    results = run_demo(args.tasks, str(work_dir), record=args.record,
                       gn_compare=() if args.no_pictures else GN_COMPARE,
                       norm_cfg=norm_cfg_for(args.norm) if args.norm else None,
                       iters=args.iters, batch_size=args.batch_size, seed=args.seed,
                       val_images=args.val_images, threads=args.threads)
    outputs = [work_dir / 'demo_results.png', work_dir / 'runs.jsonl']
    plot_demo(results, str(outputs[0]))
    if not args.no_pictures:
        twins = {r['task']: r for r in results if r['tag'] == 'gn'}
        for res in (r for r in results if not r['tag']):
            out = work_dir / f"{res['task']}_predictions.png"
            twin = twins.get(res['task'])
            compare = {'GN': (twin['cfg'], twin['checkpoint'])} if twin else None
            plot_task(f"{res['title']}, seed {res['seed']}", res['cfg'], res['checkpoint'],
                      str(out), compare=compare)
            outputs.append(out)
    print('\n' + format_demo_table(results))
    print(f'\ntotal wall time {time.perf_counter() - t0:.0f} s')
    for path in outputs:
        print(f'  wrote {path}')
    failed = failure_messages(results, threads=args.threads)
    for msg in failed:
        print(msg, file=sys.stderr)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
