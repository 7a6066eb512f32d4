"""Results tables of docs/results.md and the README, generated from the committed records.

Nothing in those tables is typed by hand: ``tools/analysis_tools/results_report.py`` renders
each block below from ``docs/results/*.jsonl`` and writes it between the document's marker
comments ``<!-- results:NAME:begin -->`` and ``<!-- results:NAME:end -->``; ``--check`` fails
when a document is not what the records give. Cells with fewer than three runs say so.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Optional

from .demo import records_tables
from .study import (COLUMNS, NORM_COLORS, NORM_ORDER, REF_BATCH, TASK_METRIC, batch_size_table,
                    batch_size_tasks, cell_runs, load_results, plot_study, sweep_table,
                    transfer_table)
from .tasks import TASKS

__all__ = ['MIN_SEEDS', 'RESULTS_DIR', 'cell', 'main_table', 'paired_table', 'drops',
           'robustness_table', 'robustness_verdicts', 'plot_robustness', 'test_time_lcn_table',
           'render_blocks', 'replace_blocks', 'first_difference']

#: Runs per cell the issue asks for (fewer are flagged in every cell).
MIN_SEEDS = 3
#: Where the records live, relative to the repository root.
RESULTS_DIR = 'docs/results'
NOT_RUN = 'not run yet'


def _mean_std(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def cell(values: list[float], signed: bool = False) -> str:
    """``mean ± std (n=k)`` (sample std); fewer than :data:`MIN_SEEDS` runs flagged ``< 3``."""
    if not values:
        return 'not run'
    n = len(values)
    mean, std = _mean_std(values)
    fmt = '{:+.1f}' if signed else '{:.1f}'
    text = fmt.format(mean) + (f' ± {std:.1f}' if n > 1 else '')
    return f'{text} (n={n})' if n >= MIN_SEEDS else f'{text} (n={n} < {MIN_SEEDS})'


def _label(task: str, metric: str) -> str:
    return f'{TASKS[task].title.split(" (")[0]}: {metric}'


def main_table(records: list[dict]) -> str:
    """Six norms x four columns (batch 4, the task's study schedule), mean ± std over seeds."""
    lines = ['| norm | ' + ' | '.join(_label(t, m) for t, m in COLUMNS) + ' |',
             '|---|' + '---:|' * len(COLUMNS)]
    for norm in NORM_ORDER:
        cells = [cell([r['metrics'][m] for r in cell_runs(records, t, norm, REF_BATCH)])
                 for t, m in COLUMNS]
        lines.append(f'| {norm} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def _by_seed(records: list[dict], task: str, norm: str, metric: str) -> dict[int, float]:
    return {r['seed']: r['metrics'][metric] for r in cell_runs(records, task, norm, REF_BATCH)}


def paired_table(records: list[dict], others: tuple = ('GN', 'BN')) -> str:
    """LCN vs each of ``others`` per column, on the seeds both have: per-seed differences
    (LCN − other), their mean ± std, and whether LCN is ahead in every seed."""
    lines = ['| column | LCN vs | per-seed difference LCN − other | mean difference | '
             'sign across seeds |', '|---|---|---|---:|---|']
    for task, metric in COLUMNS:
        lcn = _by_seed(records, task, 'LCN', metric)
        for other in others:
            ref = _by_seed(records, task, other, metric)
            seeds = sorted(set(lcn) & set(ref))
            if not seeds:
                lines.append(f'| {_label(task, metric)} | {other} | not run | not run | — |')
                continue
            diffs = [lcn[s] - ref[s] for s in seeds]
            ahead = sum(d > 0 for d in diffs)
            behind = sum(d < 0 for d in diffs)
            if ahead == len(diffs):
                sign = f'LCN higher in all {len(diffs)}'
            elif behind == len(diffs):
                sign = f'LCN lower in all {len(diffs)}'
            else:
                sign = f'mixed: LCN higher in {ahead} of {len(diffs)}'
            if len(diffs) < MIN_SEEDS:
                sign += f' (n < {MIN_SEEDS})'
            per_seed = ', '.join(f's{s}: {d:+.1f}' for s, d in zip(seeds, diffs))
            lines.append(f'| {_label(task, metric)} | {other} | {per_seed} | '
                         f'{cell(diffs, signed=True)} | {sign} |')
    return '\n'.join(lines)


def drops(robust: list[dict], task: str, norm: str, shift: str) -> list[float]:
    """Per trained run (study cell of ``task``/``norm``): metric under ``shift`` minus the same
    run's clean metric (both from the robustness evaluation, same val images)."""
    metric = TASK_METRIC[task]
    runs = cell_runs(robust, task, norm, REF_BATCH)
    clean = {r['source']: r['metrics'][metric] for r in runs if r['shift'] == 'none'}
    return [r['metrics'][metric] - clean[r['source']] for r in runs
            if r['shift'] == shift and r['source'] in clean]


def _shifts_of(robust: list[dict], task: str) -> list[str]:
    from .shifts import SHIFTS
    present = {r['shift'] for r in robust if r['task'] == task}
    return [s for s in SHIFTS if s in present]


def robustness_table(robust: list[dict], task: str) -> str:
    """One row per norm: clean metric, then the drop under each shift (mean ± std, n)."""
    metric = TASK_METRIC[task]
    shifts = _shifts_of(robust, task)
    lines = [f'| norm | clean {metric} | ' + ' | '.join(f'{s}: drop' for s in shifts) + ' |',
             '|---|---:|' + '---:|' * len(shifts)]
    for norm in NORM_ORDER:
        clean = [r['metrics'][metric] for r in cell_runs(robust, task, norm, REF_BATCH)
                 if r['shift'] == 'none']
        cells = [cell(clean)] + [cell(drops(robust, task, norm, s), signed=True) for s in shifts]
        lines.append(f'| {norm} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def robustness_verdicts(robust: list[dict], task: str) -> str:
    """Per shift, in words: is LCN's mean drop smaller than GN's and BN's, and is the gap larger
    than the seed spread (the larger of the two sample stds)?"""
    out = []
    for shift in _shifts_of(robust, task):
        lcn = drops(robust, task, 'LCN', shift)
        if not lcn:
            out.append(f'- {shift}: LCN not evaluated.')
            continue
        lm, ls = _mean_std(lcn)
        parts = []
        for other in ('GN', 'BN'):
            ref = drops(robust, task, other, shift)
            if not ref:
                parts.append(f'{other} not evaluated')
                continue
            om, os_ = _mean_std(ref)
            smaller = 'smaller' if lm > om else 'not smaller'  # drops are negative
            spread = max(ls, os_)
            within = 'beyond' if abs(lm - om) > spread else 'within'
            parts.append(f"{smaller} than {other}'s ({om:+.1f} ± {os_:.1f}, n={len(ref)}; "
                         f'gap {lm - om:+.1f}, {within} the seed spread {spread:.1f})')
        out.append(f'- {shift}: LCN drop {lm:+.1f} ± {ls:.1f} (n={len(lcn)}) is '
                   + '; '.join(parts) + '.')
    return '\n'.join(out)


def plot_robustness(robust: list[dict], out: str) -> Optional[str]:
    """Bars: mean drop per shift and norm (error bars: seed std), one panel per task."""
    tasks = [t for t in TASK_METRIC if _shifts_of(robust, t)]
    if not tasks:
        return None
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        shifts = _shifts_of(robust, task)
        width = 0.8 / len(NORM_ORDER)
        for j, norm in enumerate(NORM_ORDER):
            for i, shift in enumerate(shifts):
                d = drops(robust, task, norm, shift)
                if d:
                    mean, std = _mean_std(d)
                    ax.bar(i + (j - len(NORM_ORDER) / 2 + 0.5) * width, mean, width, yerr=std,
                           capsize=2, color=NORM_COLORS[norm], label=norm if i == 0 else None)
        ax.axhline(0, color='k', lw=0.8)
        ax.set_xticks(range(len(shifts)), shifts, fontsize=8)
        ax.set_ylabel(f'{TASK_METRIC[task]} change vs clean (val)')
        ax.set_title(TASKS[task].title.split(' (')[0], fontsize=9)
        ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def test_time_lcn_table(records: list[dict]) -> str:
    """GN-trained models evaluated on the whole scene as GN and with LCN of window k swapped
    in at test time, next to LCN-trained models; mean ± std over the trained seeds."""
    rows: dict = {}
    for r in records:
        key = (r['task'], r['scene'], r['trained_norm'], r['test_norm'], r.get('window') or 0)
        rows.setdefault(key, []).append(r)
    lines = ['| task | scene | trained as | evaluated as | val-strip mIoU | whole-scene mIoU |',
             '|---|---|---|---|---:|---:|']
    for (task, scene, trained, test, window), recs in sorted(rows.items()):
        evaluated = f'{test} (window {window})' if test == 'LCN' and window else test
        lines.append(f'| {task} | {scene} | {trained} | {evaluated} | '
                     f"{cell([r['metrics']['mIoU val strip'] for r in recs])} | "
                     f"{cell([r['metrics']['mIoU scene'] for r in recs])} |")
    return '\n'.join(lines)


def render_blocks(root: Path, figures: Path) -> dict[str, dict[str, str]]:
    """Every generated block, per document (path relative to ``root``) and block name.

    The plots are written under ``figures`` (``docs/figures``, or a scratch folder for
    ``--check``); a document links a plot only when the records give one.
    """
    rdir = root / RESULTS_DIR
    study = load_results(str(rdir / 'study.jsonl'))
    robust = _load_all(rdir / 'robustness.jsonl')
    ttl = _load_all(rdir / 'test_time_lcn.jsonl')
    study_plots = plot_study(study, str(figures / 'study'))
    rob_png = plot_robustness(robust, str(figures / 'robustness.png'))
    n_runs = sum(bool(cell_runs(study, t, n, REF_BATCH)) for t, _ in COLUMNS for n in NORM_ORDER)
    source = (f'Generated by `python tools/analysis_tools/results_report.py` from '
              f'`{RESULTS_DIR}/study.jsonl` ({len(study)} records; {n_runs} of '
              f'{len(COLUMNS) * len(NORM_ORDER)} cells have at least one run).')

    def images(prefix: str) -> str:
        names = {Path(p).name for p in study_plots}
        return ''.join(f'\n\n![{alt}]({prefix}figures/study/{name})' for name, alt in (
            ('norms.png', 'metric per norm (mean ± std over seeds)'),
            ('batch_size.png', 'metric vs batch size')) if name in names)

    main = f'{source}\n\n{main_table(study)}'
    batch = '\n\n'.join(f'{TASKS[t].title}:\n\n{batch_size_table(study, t)}'
                        for t in batch_size_tasks(study)) or NOT_RUN
    rob_parts = []
    for task in TASK_METRIC:
        if _shifts_of(robust, task):
            rob_parts.append(f'{TASKS[task].title}, {TASK_METRIC[task]} (val), change from '
                             f'the clean metric:\n\n{robustness_table(robust, task)}\n\n'
                             f'{robustness_verdicts(robust, task)}')
    if rob_parts and rob_png:
        rob_parts.append('![metric change under each shift, per norm](figures/robustness.png)')
    sweeps = [r for r in study if r.get('tag') == 'sweep']
    transfers = [r for r in study if r.get('tag') == 'transfer']
    demo_metrics, demo_runs = records_tables(_load_jsonl(rdir / 'demo_runs.jsonl'))
    demo_source = (f'Generated by `python tools/analysis_tools/results_report.py` from '
                   f'`{RESULTS_DIR}/demo_runs.jsonl`.')
    return {
        'projects/aerial_demo/README.md': {
            'demo-metrics': f'{demo_source}\n\n{demo_metrics}',
            'demo-runs': demo_runs or NOT_RUN,
        },
        'docs/results.md': {
            'main': main + images(''),
            'paired': paired_table(study),
            'batch': batch,
            'robustness': '\n\n'.join(rob_parts) or NOT_RUN,
            'ttlcn': test_time_lcn_table(ttl) if ttl else NOT_RUN,
            'sweep': sweep_table(study) if sweeps else NOT_RUN,
            'transfer': transfer_table(study) if transfers else NOT_RUN,
        },
        'README.md': {'main': main + images('docs/'),
                      'demo-metrics': f'{demo_source}\n\n{demo_metrics}'},
    }


def _load_jsonl(path: Path) -> list[dict]:
    """Every complete JSON line of ``path`` (none if it does not exist)."""
    import json
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _load_all(path: Path) -> list[dict]:
    """Records of a non-study file (robustness, test-time LCN), first one per ``key``."""
    out, seen = [], set()
    for rec in _load_jsonl(path):
        if rec.get('key') not in seen:
            seen.add(rec.get('key'))
            out.append(rec)
    return out


_BLOCK = re.compile(r'(<!-- results:(?P<name>[\w-]+):begin -->\n).*?'
                    r'(\n<!-- results:(?P=name):end -->)', re.S)


def replace_blocks(text: str, blocks: dict[str, str], doc: str = 'document') -> str:
    """``text`` with each marked block's content replaced by ``blocks[name]``.

    Raises ``KeyError`` for a marker without a generator or a block without its markers, so a
    document cannot silently keep a stale or hand-typed table.
    """
    found = set()

    def sub(m: re.Match) -> str:
        name = m['name']
        if name not in blocks:
            raise KeyError(f'{doc}: no generator for the block {name!r}')
        found.add(name)
        return f'{m[1]}\n{blocks[name]}\n{m[3]}'

    new = _BLOCK.sub(sub, text)
    missing = set(blocks) - found
    if missing:
        raise KeyError(f'{doc}: markers missing for {sorted(missing)} '
                       f'(<!-- results:NAME:begin --> ... <!-- results:NAME:end -->)')
    return new


def first_difference(old: str, new: str) -> Optional[tuple[int, str, str]]:
    """``(line number, document's line, generated line)`` of the first difference, or None."""
    a, b = old.splitlines(), new.splitlines()
    for i in range(max(len(a), len(b))):
        x = a[i] if i < len(a) else '<end of file>'
        y = b[i] if i < len(b) else '<end of file>'
        if x != y:
            return i + 1, x, y
    return None
