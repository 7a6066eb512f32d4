"""The norm study behind ``projects/aerial_demo/tools/compare_norms.py``: resumable runs, tables
and plots.

Every finished run appends one JSON line to a results file; a run whose key (task, norm cfg,
seed, batch size, iterations, tag, initial weights) is already there is skipped, so a long
study can be stopped and resumed over several sittings. Tables and plots are made from
whatever is recorded; cells without runs say ``not run``.

Each record also carries what makes it checkable (:func:`.records.environment`): CPU, cores,
torch threads, the load average when the run started and when it ended, python/torch/mmengine/
mmdet/mmseg versions, the git commit and the exact command. The study's record file is
``docs/results/study.jsonl`` (committed); checkpoints stay in ``work_dirs/``.

Batch sizes: a run at batch size ``b`` trains ``iters * ref_batch / b`` iterations, so every
batch size sees the same number of images with the same optimizer settings.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Iterable, Optional

from .records import environment
from .run import prepare_cfg, train_and_evaluate
from .tasks import NORMS, REPO_ROOT, TASKS, norm_cfg_for, percent

__all__ = ['COLUMNS', 'TASK_METRIC', 'NORM_ORDER', 'STUDY_RESULTS', 'make_spec', 'run_key',
           'load_results', 'append_result', 'cell_runs', 'run_spec', 'run_specs', 'norm_table',
           'batch_size_table', 'sweep_table', 'transfer_table', 'plot_study', 'mean_std']

#: Columns of the main table: (task, metric label in %) — tree bbox mAP, building bbox and
#: mask mAP, building mIoU.
COLUMNS = [('det', 'bbox mAP'), ('inst', 'bbox mAP'), ('inst', 'mask mAP'), ('seg', 'mIoU')]
#: One metric per task for batch-size tables/plots, sweeps and transfer runs.
TASK_METRIC = {'det': 'bbox mAP', 'inst': 'mask mAP', 'seg': 'mIoU', 'roads': 'mIoU'}
#: One colour per norm in every plot (LCN red).
NORM_COLORS = {'BN': 'tab:blue', 'GN': 'tab:orange', 'IN': 'tab:green', 'LN': 'tab:purple',
               'PN': 'tab:gray', 'LCN': 'tab:red'}
NORM_ORDER = list(NORMS)  # BN GN IN LN PN LCN
REF_BATCH = 4
#: The committed record file of the study (one JSON line per finished run).
STUDY_RESULTS = 'docs/results/study.jsonl'


def make_spec(task: str, norm: str, seed: int = 0, batch_size: int = REF_BATCH,
              iters: Optional[int] = None, window_size: Optional[int] = None,
              num_groups: Optional[int] = None, tag: str = '', lr: Optional[float] = None,
              load_from: Optional[str] = None, config: Optional[str] = None) -> dict:
    """One run: task, norm (name + full cfg), seed, batch size, iterations (scaled to the
    batch size from ``iters`` at batch 4, default the task's ``study_iters``), tag (``''``
    study, ``sweep``, ``transfer``...), optional lr, initial weights and config override."""
    task_def = TASKS[task]
    base_iters = iters or task_def.study_iters
    return dict(task=task, norm=norm,
                norm_cfg=norm_cfg_for(norm, window_size=window_size, num_groups=num_groups),
                seed=seed, batch_size=batch_size,
                iters=max(1, round(base_iters * REF_BATCH / batch_size)), tag=tag, lr=lr,
                load_from=load_from, config=config or task_def.config)


def run_key(rec: dict) -> str:
    """What identifies a run (results of the same key are not run again)."""
    keys = ('task', 'norm_cfg', 'seed', 'batch_size', 'iters', 'tag', 'lr', 'load_from',
            'config')
    return json.dumps({k: rec.get(k) for k in keys}, sort_keys=True)


def load_results(path: str) -> list[dict]:
    """The records of a results file (missing file: none), first one per run key.

    Truncated lines (a run killed while writing) are skipped; a run recorded twice (two study
    processes sharing the file) counts once.
    """
    p = Path(path)
    if not p.exists():
        return []
    out, seen = [], set()
    for line in p.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        key = run_key(rec)
        if key not in seen:
            seen.add(key)
            out.append(rec)
    return out


def append_result(path: str, rec: dict) -> None:
    """Append one record as a JSON line (keys sorted, so diffs of the file stay readable)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open('a') as f:
        f.write(json.dumps(rec, sort_keys=True) + '\n')


def run_spec(spec: dict, work_root: str, threads: Optional[int] = None,
             eval_untrained: bool = False) -> dict:
    """Train and evaluate one spec; return its record (metrics in %)."""
    name = '_'.join(str(x) for x in (spec['task'], spec['tag'] or 'study', spec['norm'],
                                     f"w{spec['norm_cfg'].get('window_size', '')}",
                                     f"s{spec['seed']}", f"b{spec['batch_size']}",
                                     f"i{spec['iters']}"))
    work_dir = Path(work_root) / name
    cfg = prepare_cfg(REPO_ROOT / spec['config'], str(work_dir), norm_cfg=spec['norm_cfg'],
                      batch_size=spec['batch_size'], max_iters=spec['iters'],
                      seed=spec['seed'], lr=spec.get('lr'), load_from=spec.get('load_from'),
                      log_interval=50)
    load_start = round(os.getloadavg()[0], 2)
    t0 = time.perf_counter()
    out = train_and_evaluate(cfg, eval_untrained=eval_untrained, threads=threads)
    task = TASKS[spec['task']]
    metrics = {label: percent(k, out['metrics'].get(k, 0.0))
               for k, label in task.metrics.items()}
    env = environment(REPO_ROOT)
    rec = dict(spec, metrics=metrics, raw_metrics=out['metrics'],
               wall_s=round(time.perf_counter() - t0, 1), checkpoint=out['checkpoint'],
               machine=f"{env['cpu']}, {env['cores']} cores, torch threads "
                       f"{env['torch_threads']}",
               loadavg_1m_start=load_start, **env)
    if eval_untrained:
        rec['before'] = {label: percent(k, (out['untrained'] or {}).get(k, 0.0))
                         for k, label in task.metrics.items()}
    return rec


def run_specs(specs: Iterable[dict], results: str, work_root: str,
              threads: Optional[int] = None) -> list[dict]:
    """Run every spec not yet in ``results``, appending each record as it finishes."""
    done = {run_key(r) for r in load_results(results)}
    specs = list(specs)
    new = []
    for i, spec in enumerate(specs, 1):
        if run_key(spec) in done:
            print(f'[{i}/{len(specs)}] skip (recorded): {_describe(spec)}', flush=True)
            continue
        print(f'[{i}/{len(specs)}] run: {_describe(spec)}', flush=True)
        rec = run_spec(spec, work_root, threads)
        append_result(results, rec)
        done.add(run_key(spec))
        new.append(rec)
        print(f'[{i}/{len(specs)}] done in {rec["wall_s"]:.0f} s: {rec["metrics"]}', flush=True)
    return new


def _describe(spec: dict) -> str:
    return (f"{spec['task']} {spec['tag'] or 'study'} {spec['norm']} {spec['norm_cfg']} "
            f"seed {spec['seed']} batch {spec['batch_size']} x {spec['iters']} iters")


def mean_std(values: list[float]) -> str:
    """``mean ± std (n=k)``, sample std (ddof 1); one value: ``value (n=1)``; none: not run."""
    if not values:
        return 'not run'
    n = len(values)
    mean = sum(values) / n
    if n == 1:
        return f'{mean:.1f} (n=1)'
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return f'{mean:.1f} ± {std:.1f} (n={n})'


def cell_runs(records: list[dict], task: str, norm: str, batch_size: int,
              tag: str = '') -> list[dict]:
    """The study runs of one cell: default norm cfg, config and schedule (a shortened or
    otherwise changed run never counts in the study's tables)."""
    spec = make_spec(task, norm, batch_size=batch_size)
    return [r for r in records if r['task'] == task and r['norm'] == norm
            and r['batch_size'] == batch_size and r.get('tag', '') == tag
            and r['norm_cfg'] == spec['norm_cfg'] and r['iters'] == spec['iters']
            and r.get('config', spec['config']) == spec['config'] and not r.get('load_from')]


def norm_table(records: list[dict], batch_size: int = REF_BATCH) -> str:
    """Main table: one row per norm, mean ± std over seeds of each task's headline metric."""
    head = '| norm | ' + ' | '.join(f'{TASKS[t].title.split(" (")[0]}: {m}'
                                    for t, m in COLUMNS) + ' |'
    lines = [head, '|---|' + '---:|' * len(COLUMNS)]
    for norm in NORM_ORDER:
        cells = [mean_std([r['metrics'][m] for r in cell_runs(records, t, norm, batch_size)])
                 for t, m in COLUMNS]
        lines.append(f'| {norm} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def batch_size_tasks(records: list[dict]) -> list[str]:
    """Tasks of the norm columns with study runs at more than one batch size."""
    return [t for t in dict.fromkeys(t for t, _ in COLUMNS)
            if len({r['batch_size'] for r in records if r['task'] == t and not r.get('tag')}) > 1]


def batch_size_table(records: list[dict], task: str = 'seg',
                     batch_sizes: Iterable[int] = (1, 2, 4)) -> str:
    """The task's headline metric per norm and batch size (mean ± std over seeds)."""
    metric = TASK_METRIC[task]
    batch_sizes = list(batch_sizes)
    lines = ['| norm | ' + ' | '.join(f'batch {b}' for b in batch_sizes) + ' |',
             '|---|' + '---:|' * len(batch_sizes)]
    for norm in NORM_ORDER:
        cells = [mean_std([r['metrics'][metric] for r in cell_runs(records, task, norm, b)])
                 for b in batch_sizes]
        lines.append(f'| {norm} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def sweep_table(records: list[dict], tag: str = 'sweep') -> str:
    """LCN window/groups sweep: one row per (task, window, groups)."""
    rows = {}
    for r in records:
        if r.get('tag') == tag:
            c = r['norm_cfg']
            rows.setdefault((r['task'], r['config'], c.get('window_size'),
                             c.get('num_groups'), r['iters']), []).append(r)
    lines = ['| config (val split) | window | groups | iters x batch | val metric |',
             '|---|---:|---:|---|---:|']
    for (task, config, w, g, iters), recs in sorted(
            rows.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0, kv[0][3] or 0,
                                          kv[0][4])):
        metric = TASK_METRIC[task]
        lines.append(f'| `{Path(config).name}` | {w} | {g} | {iters} x '
                     f'{recs[0]["batch_size"]} | '
                     f'{mean_std([r["metrics"][metric] for r in recs])} {metric} |')
    return '\n'.join(lines)


def transfer_table(records: list[dict]) -> str:
    """GN -> LCN fine-tuning runs: before (converted, not fine-tuned) and after."""
    lines = ['| fine-tuned as | init | source model (GN) | iters x batch | before fine-tuning '
             '| after |', '|---|---|---:|---|---:|---:|']
    for r in records:
        if r.get('tag') != 'transfer':
            continue
        metric = TASK_METRIC[r['task']]
        before = r.get('before', {}).get(metric)
        src = r.get('source', {}).get('metrics', {}).get(metric)
        w = r['norm_cfg'].get('window_size')
        lines.append(f"| {r['task']} {r['norm']}{f' (window {w})' if w else ''} seed {r['seed']} | "
                     f"`{Path(r['load_from']).name if r.get('load_from') else 'scratch'}` | "
                     f"{'n/a' if src is None else f'{src:.1f}'} | "
                     f"{r['iters']} x {r['batch_size']} | "
                     f"{'n/a' if before is None else f'{before:.1f}'} | "
                     f"{r['metrics'][metric]:.1f} {metric} |")
    return '\n'.join(lines)


def plot_study(records: list[dict], out_dir: str, batch_size: int = REF_BATCH) -> list[str]:
    """``norms.png`` (metric per norm, mean ± std) and ``batch_size.png`` (metric vs batch)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    cols = [(t, m) for t, m in COLUMNS if any(cell_runs(records, t, n, batch_size)
                                              for n in NORM_ORDER)]
    if cols:
        fig, axes = plt.subplots(1, len(cols), figsize=(4.2 * len(cols), 3.4), squeeze=False)
        for ax, (task, metric) in zip(axes[0], cols):
            for i, norm in enumerate(NORM_ORDER):
                vals = [r['metrics'][metric]
                        for r in cell_runs(records, task, norm, batch_size)]
                if not vals:
                    continue
                mean = sum(vals) / len(vals)
                std = (sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5 \
                    if len(vals) > 1 else 0
                ax.bar(i, mean, yerr=std, capsize=3,
                       color='tab:red' if norm == 'LCN' else 'tab:blue')
                ax.plot([i] * len(vals), vals, 'k.', ms=4)
            ax.set_xticks(range(len(NORM_ORDER)), NORM_ORDER)
            ax.set_title(f'{TASKS[task].title.split(" (")[0]}\n{metric} (val), batch '
                         f'{batch_size}', fontsize=9)
            lo = min((r['metrics'][metric] for r in records if r['task'] == task),
                     default=0)
            ax.set_ylim(max(0, lo - 5), None)
        fig.tight_layout()
        fig.savefig(out / 'norms.png', dpi=100)
        plt.close(fig)
        written.append(str(out / 'norms.png'))
    tasks = batch_size_tasks(records)
    if tasks:
        fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.4), squeeze=False)
        for ax, task in zip(axes[0], tasks):
            metric = TASK_METRIC[task]
            for norm in NORM_ORDER:
                pts = []
                for b in sorted({r['batch_size'] for r in records}):
                    vals = [r['metrics'][metric] for r in cell_runs(records, task, norm, b)]
                    if vals:
                        pts.append((b, sum(vals) / len(vals)))
                if len(pts) > 1:
                    ax.plot(*zip(*pts), 'o-', label=norm, color=NORM_COLORS[norm],
                            lw=2.5 if norm == 'LCN' else 1.2)
            ax.set_xscale('log', base=2)
            ax.set_xlabel('training batch size (same images seen)')
            ax.set_ylabel(f'{metric} (val)')
            ax.set_title(TASKS[task].title.split(' (')[0], fontsize=9)
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / 'batch_size.png', dpi=100)
        plt.close(fig)
        written.append(str(out / 'batch_size.png'))
    return written
