#!/usr/bin/env python
"""Compare norms (BN GN IN LN PN LCN) on the demo tasks: seeds x batch sizes, resumable.

Each finished run appends one JSON line (metrics, wall time, machine, load, versions, commit,
command) to --results, by default the committed ``docs/results/study.jsonl``; recorded runs are
skipped, so the study can be stopped and continued over several sittings. After running (or
with --report-only) it writes a quick markdown report and plots to --out-dir; the tables of
docs/results.md and the README come from ``tools/analysis_tools/results_report.py``.
Logic: projects/aerial_demo/aerial_demo/study.py. Run from the repository root:

    # the main table of docs/results.md: six norms x four columns, three seeds
    python projects/aerial_demo/tools/compare_norms.py --tasks seg det --seeds 0 1 2 --threads 1
    python projects/aerial_demo/tools/compare_norms.py --tasks inst --seeds 0 1 2 --threads 1
    python projects/aerial_demo/tools/compare_norms.py --tasks seg --norms BN GN LCN \
        --batch-sizes 1 2
    # LCN window sweep on the roads val split (tag 'sweep')
    python projects/aerial_demo/tools/compare_norms.py --tasks seg --norms LCN \
        --windows 7 15 31 --sweep-roads
    # GN -> LCN transfer: fine-tune the recorded GN seg run's checkpoint as LCN
    python projects/aerial_demo/tools/compare_norms.py --tasks seg --transfer --iters 50
"""
import argparse
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # aerial_demo
import lcn_mm  # noqa: E402,F401
from aerial_demo import TASKS  # noqa: E402
from aerial_demo.study import (NORM_ORDER, STUDY_RESULTS, batch_size_table,  # noqa: E402
                               batch_size_tasks, load_results, make_spec, norm_table, plot_study,
                               run_specs, sweep_table, transfer_table)
from aerial_demo.transfer import run_transfer  # noqa: E402

ROADS = 'projects/aerial_demo/configs/fpn_r18_lcn_spacenet-seg-roads.py'


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--tasks', nargs='+', default=['seg'], choices=list(TASKS))
    p.add_argument('--norms', nargs='+', default=NORM_ORDER, choices=NORM_ORDER)
    p.add_argument('--seeds', nargs='+', type=int, default=[0])
    p.add_argument('--batch-sizes', nargs='+', type=int, default=[4])
    p.add_argument('--iters', type=int, help='iterations at batch 4 (default: the task\'s); '
                   'other batch sizes train 4/b times as many (same images seen)')
    p.add_argument('--windows', nargs='+', type=int,
                   help='LCN window sizes to sweep (runs tagged "sweep"); with --transfer: '
                   'the fine-tuned LCN\'s windows')
    p.add_argument('--groups', type=int, help='LCN/GN num_groups override')
    p.add_argument('--sweep-roads', action='store_true',
                   help='sweep on the roads seg config (val split) instead of the task\'s')
    p.add_argument('--transfer', action='store_true',
                   help='GN -> LCN: convert the GN run\'s checkpoint (seed 0, batch 4), '
                   'fine-tune it as LCN for --iters, record before/after (tag "transfer")')
    p.add_argument('--results', default=STUDY_RESULTS,
                   help='record file (committed; relative to the repository root)')
    p.add_argument('--work-root', default='work_dirs/study/runs')
    p.add_argument('--out-dir', default='work_dirs/study', help='report.md and plots')
    p.add_argument('--report-only', action='store_true')
    p.add_argument('--threads', type=int, default=2)
    args = p.parse_args(argv)
    warnings.filterwarnings('ignore', category=UserWarning)
    warnings.filterwarnings('ignore', category=FutureWarning)

    if not args.report_only:
        if args.transfer:
            for task in args.tasks:
                for w in (args.windows or [None]):
                    run_transfer(task, args.results, args.work_root, iters=args.iters,
                                 threads=args.threads, window_size=w)
        else:
            specs = []
            for task in args.tasks:
                for b in args.batch_sizes:
                    for seed in args.seeds:
                        for norm in args.norms:
                            for w in (args.windows or [None]):
                                specs.append(make_spec(
                                    task, norm, seed=seed, batch_size=b, iters=args.iters,
                                    window_size=w, num_groups=args.groups,
                                    tag='sweep' if args.windows else '',
                                    config=ROADS if args.sweep_roads else None))
            run_specs(specs, args.results, args.work_root, threads=args.threads)

    records = load_results(args.results)
    batch_sections = []
    for task in batch_size_tasks(records):
        batch_sections += [f'## Batch size ({TASKS[task].title})',
                           batch_size_table(records, task)]
    report = '\n\n'.join([
        '## Norms (batch 4)', norm_table(records), *batch_sections,
        '## LCN window sweep', sweep_table(records),
        '## GN -> LCN transfer', transfer_table(records)])
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / 'report.md').write_text(report + '\n')
    plots = plot_study(records, str(out))
    print(report)
    print(f'\n{len(records)} runs recorded in {args.results}; wrote {out / "report.md"} '
          f'{" ".join(plots)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
