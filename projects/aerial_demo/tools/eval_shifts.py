#!/usr/bin/env python
"""Evaluate every study checkpoint under seeded photometric shifts (issue #16, item 4).

For each study record (docs/results/study.jsonl) whose checkpoint is on this machine, the model
is evaluated on its val split clean and under each shift of aerial_demo.shifts (gain_offset,
ramp, vignette, shadow, haze, tile_gain); one JSON line per (run, shift) is appended to --out.
Recorded evaluations are skipped (resumable). Run from the repository root:

    python projects/aerial_demo/tools/eval_shifts.py --tasks seg det inst --threads 1
    python tools/analysis_tools/results_report.py   # robustness table + plot in docs/results.md
"""
import argparse
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # aerial_demo
import lcn_mm  # noqa: F401,E402
from aerial_demo import TASKS  # noqa: E402
from aerial_demo.robustness import ROBUSTNESS_RESULTS, eval_shifts  # noqa: E402
from aerial_demo.shifts import SHIFTS  # noqa: E402
from aerial_demo.study import NORM_ORDER, STUDY_RESULTS, load_results  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--tasks', nargs='+', default=['seg', 'det', 'inst'], choices=list(TASKS))
    p.add_argument('--norms', nargs='+', default=NORM_ORDER, choices=NORM_ORDER)
    p.add_argument('--shifts', nargs='+', default=list(SHIFTS), choices=list(SHIFTS))
    p.add_argument('--shift-seed', type=int, default=0)
    p.add_argument('--results', default=STUDY_RESULTS, help='study records')
    p.add_argument('--out', default=ROBUSTNESS_RESULTS)
    p.add_argument('--work-root', default='work_dirs/eval_shifts')
    p.add_argument('--val-images', type=int, help='first N val images only (tests)')
    p.add_argument('--threads', type=int, default=1)
    args = p.parse_args(argv)
    warnings.filterwarnings('ignore', category=UserWarning)
    records = [r for r in load_results(args.results) if r['task'] in args.tasks
               and r['norm'] in args.norms and not r.get('tag')]
    new = eval_shifts(records, args.out, args.work_root, args.shifts, args.shift_seed,
                      args.val_images, args.threads)
    print(f'{len(new)} evaluations appended to {args.out} ({len(records)} study runs)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
