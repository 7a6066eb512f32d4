"""``make demo``: train and evaluate LCN on the demo tasks, compare with trivial baselines.

Each task trains its ``projects/aerial_demo/configs`` model from scratch through the mmengine
Runner (a progress line with ETA at least every 10 s), validates at the end and is compared
with a trivial baseline: the untrained model's mAP (detection, instance segmentation) or the
all-background mIoU (semantic segmentation). A headline metric must beat its baseline by
``MARGIN`` points to pass. Every task run is one JSON record (:mod:`.records`).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable, Optional

from .records import append_jsonl, environment
from .run import prepare_cfg, train_and_evaluate
from .tasks import REPO_ROOT, TASKS, all_background_miou, percent

__all__ = ['MARGIN', 'run_task', 'run_demo', 'format_demo_table', 'failure_messages',
           'plot_demo', 'records_tables']

#: Points (of mAP / mIoU, in %) a headline metric must gain over its baseline to count.
MARGIN = 2.0


def run_task(name: str, work_dir: Path, norm_cfg: Optional[dict] = None,
             iters: Optional[int] = None, batch_size: Optional[int] = None, seed: int = 0,
             val_images: Optional[int] = None, threads: Optional[int] = None,
             tag: str = '') -> dict:
    """Train/evaluate one task; return its record (``rows``: one per reported metric)."""
    task = TASKS[name]
    run_name = name + (f'_{tag}' if tag else '')
    cfg = prepare_cfg(REPO_ROOT / task.config, str(Path(work_dir) / run_name),
                      norm_cfg=norm_cfg, batch_size=batch_size or task.batch_size,
                      max_iters=iters or task.iters, seed=seed, val_images=val_images,
                      log_interval=50)
    t0 = time.perf_counter()
    out = train_and_evaluate(cfg, eval_untrained=task.baseline == 'untrained',
                             threads=threads, label=run_name)
    wall = time.perf_counter() - t0
    if task.baseline == 'all_background':
        val = cfg.val_dataloader.dataset
        ann_dir = REPO_ROOT / val.data_root / val.data_prefix.seg_map_path
        baseline = {'mIoU': all_background_miou(ann_dir, limit=val_images)}
        baseline_name = 'all background'
    else:
        baseline, baseline_name = out['untrained'] or {}, 'untrained model'
    rows = []
    for key, label in task.metrics.items():
        # mmdet's CocoMetric returns no keys when a model detects nothing at all: mAP 0
        value = percent(key, out['metrics'].get(key, 0.0))
        base = percent(key, baseline.get(key, 0.0))
        rows.append(dict(metric=label, value=value, baseline=base,
                         headline=label in task.headline_metrics,
                         beats=value >= base + MARGIN))
    return dict(task=name, tag=tag, title=task.title, config=task.config,
                norm=dict(cfg.model.backbone.norm_cfg), seed=seed,
                iters=cfg.train_cfg.max_iters, batch_size=cfg.train_dataloader.batch_size,
                baseline_name=baseline_name, margin=MARGIN, rows=rows,
                passed=all(r['beats'] for r in rows if r['headline']),
                wall_s=round(wall, 1),
                s_per_iter=round(out['train_s'] / cfg.train_cfg.max_iters, 3),
                checkpoint=out['checkpoint'], cfg=cfg)


def run_demo(tasks: Iterable[str], work_dir: str, record: Optional[str] = None,
             gn_compare: Iterable[str] = (), norm_cfg: Optional[dict] = None,
             **kwargs) -> list[dict]:
    """Run :func:`run_task` for every task (and a GN twin of the ``gn_compare`` tasks, for the
    pictures); append each record to ``<work_dir>/runs.jsonl`` and to ``record`` if given."""
    from .tasks import NORMS
    results = []
    run_id = time.strftime('%Y%m%dT%H%M%S')  # groups the task records of one demo run
    for name in tasks:
        runs = [('', norm_cfg)] + ([('gn', NORMS['GN'])] if name in gn_compare else [])
        for tag, norm in runs:
            print(f'\n=== {name}{" (GN twin, for the picture)" if tag else ""}: '
                  f'{TASKS[name].title} ===', flush=True)
            res = run_task(name, Path(work_dir), norm_cfg=norm, tag=tag, **kwargs)
            rec = {k: v for k, v in res.items() if k != 'cfg'}
            rec.update(run_id=run_id, threads=kwargs.get('threads'), env=environment(REPO_ROOT))
            for path in filter(None, (str(Path(work_dir) / 'runs.jsonl'), record)):
                append_jsonl(path, rec)
            results.append(res)
    return results


def format_demo_table(results: list[dict]) -> str:
    """A markdown table: task, metric, value, baseline, gain over baseline + margin, verdict."""
    lines = ['| task | metric | trained | trivial baseline | gain | spare over margin | '
             'iters x batch | time |', '|---|---|---:|---:|---:|---:|---|---:|']
    for res in results:
        if res['tag']:
            continue
        for r in res['rows']:
            verdict = ('ok' if r['beats'] else 'FAILED') if r['headline'] else '(extra)'
            gain = r['value'] - r['baseline']
            lines.append(
                f"| {res['title']} | {r['metric']} ({res['norm']['type']}) | {r['value']:.1f} "
                f"| {r['baseline']:.1f} ({res['baseline_name']}) | {gain:+.1f} {verdict} | "
                f"{gain - MARGIN:+.1f} | {res['iters']} x {res['batch_size']} | "
                f"{res['wall_s']:.0f} s |")
    return '\n'.join(lines)


def failure_messages(results: list[dict], threads: Optional[int] = None) -> list[str]:
    """For each headline metric below baseline + margin: what, by how much, how to rerun."""
    msgs = []
    for res in results:
        for r in res['rows']:
            if res['tag'] or not r['headline'] or r['beats']:
                continue
            more = 2 * res['iters']
            msgs.append(
                f"FAILED: task {res['task']!r} ({res['title']}), seed {res['seed']}: "
                f"{r['metric']} = {r['value']:.1f}, needs >= {r['baseline']:.1f} "
                f"({res['baseline_name']}) + {MARGIN:g} = {r['baseline'] + MARGIN:.1f}. "
                f"Rerun this task alone with more iterations: python "
                f"projects/aerial_demo/tools/demo.py --tasks {res['task']} --seed {res['seed']} "
                f"--iters {more}" + (f' --threads {threads}' if threads else ''))
    return msgs


def plot_demo(results: list[dict], path: str) -> None:
    """Bar chart: each metric next to its trivial baseline."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows = [(res, r) for res in results if not res['tag'] for r in res['rows']]
    xs = range(len(rows))
    fig, ax = plt.subplots(figsize=(1.6 * len(rows) + 2, 3.6))
    ax.bar([x - 0.2 for x in xs], [r['baseline'] for _, r in rows], 0.4, color='0.7',
           label='trivial baseline')
    ax.bar([x + 0.2 for x in xs], [r['value'] for _, r in rows], 0.4, color='tab:red',
           label='trained')
    for x, (_, r) in zip(xs, rows):
        ax.text(x + 0.2, r['value'], f"{r['value']:.1f}", ha='center', va='bottom', fontsize=8)
    ax.set_xticks(list(xs), [f"{res['task']}\n{r['metric']}" for res, r in rows], fontsize=8)
    ax.set_ylabel('% (COCO mAP / mIoU)')
    ax.set_title('make demo: trained from scratch on 2 CPU cores vs trivial baselines',
                 fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def records_tables(records: list[dict]) -> tuple[str, str]:
    """From recorded demo runs: (per headline metric: worst value and spare over baseline +
    margin across all runs; per demo run: seed, threads, SIMD level, CPU, load, the headline
    values, time, verdict).

    Only complete demo runs count: those whose records cover every task of ``DEMO_TASKS``.
    """
    from .tasks import DEMO_TASKS
    runs: dict[str, list[dict]] = {}
    for rec in records:
        runs.setdefault(rec['run_id'], []).append(rec)
    complete = {k: v for k, v in runs.items()
                if {r['task'] for r in v if not r['tag']} >= set(DEMO_TASKS)}
    if not complete:
        return 'no complete demo run recorded yet', ''
    per_metric: dict[tuple, list] = {}
    for recs in complete.values():
        for rec in recs:
            for row in rec['rows'] if not rec['tag'] else []:
                if row['headline']:
                    per_metric.setdefault((rec['task'], rec['title'], row['metric']), []).append(
                        (row['value'], row['baseline'], rec['margin']))
    m_lines = ['| task | headline metric | runs | worst | best | baseline (max) | '
               'worst spare over baseline + margin |', '|---|---|---:|---:|---:|---:|---:|']
    for (_, title, metric), vals in per_metric.items():
        spare = min(v - b - m for v, b, m in vals)
        m_lines.append(f'| {title} | {metric} | {len(vals)} | {min(v for v, _, _ in vals):.1f} '
                       f'| {max(v for v, _, _ in vals):.1f} | '
                       f'{max(b for _, b, _ in vals):.1f} | {spare:+.1f} |')
    heads = [(task, metric) for task, _, metric in per_metric]
    head_cols = ' | '.join(f'{t} {m}' for t, m in heads)
    r_lines = ['| run | seed | threads | SIMD (ATEN_CPU_CAPABILITY) | CPU | load at end | '
               f'{head_cols} | training + evaluation time | passed |',
               '|---|---:|---:|---|---|---:|' + '---:|' * len(heads) + '---:|---|']
    for run_id, recs in sorted(complete.items()):
        env = recs[-1]['env']
        wall = sum(r['wall_s'] for r in recs)
        forced = env.get('ATEN_CPU_CAPABILITY')
        simd = env['cpu_capability'] + (f' ({forced})' if forced else '')
        passed = all(r['passed'] for r in recs if not r['tag'])
        values = {(r['task'], row['metric']): row['value']
                  for r in recs if not r['tag'] for row in r['rows'] if row['headline']}
        cells = ' | '.join(f'{values[h]:.1f}' if h in values else '-' for h in heads)
        r_lines.append(f"| {run_id} | {recs[0]['seed']} | {recs[0]['threads']} | {simd} | "
                       f"{env['cpu']} | {env['loadavg_1m']:.1f} | {cells} | {wall / 60:.1f} min | "
                       f"{'yes' if passed else 'NO'} |")
    return '\n'.join(m_lines), '\n'.join(r_lines)
