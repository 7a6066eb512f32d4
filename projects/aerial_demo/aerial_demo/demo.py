"""``make demo``: train and evaluate LCN on the three aerial tasks, compare with trivial baselines.

Each task trains its ``configs/demo`` model from scratch through the mmengine Runner (progress
lines every 10 iterations), validates at the end and is compared with a trivial baseline:
the untrained model's mAP (detection, instance segmentation) or the all-background mIoU
(semantic segmentation). A metric must beat its baseline by ``margin`` points to pass.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterable, Optional

from .run import prepare_cfg, train_and_evaluate
from .tasks import REPO_ROOT, TASKS, all_background_miou

__all__ = ['run_demo', 'format_demo_table', 'plot_demo', 'MARGIN']

#: Points (of mAP / mIoU, in %) a headline metric must gain over its baseline to count.
MARGIN = 2.0


def _percent(key: str, value: float) -> float:
    """mmdet reports COCO mAP in [0, 1], mmseg mIoU in %: use % throughout."""
    return value * 100 if key.startswith('coco/') else value


def run_task(name: str, work_dir: Path, norm_cfg: Optional[dict] = None,
             iters: Optional[int] = None, batch_size: Optional[int] = None, seed: int = 0,
             val_images: Optional[int] = None, threads: Optional[int] = None) -> list[dict]:
    """Train/evaluate one task; return one row per reported metric."""
    task = TASKS[name]
    cfg = prepare_cfg(REPO_ROOT / task.config, str(work_dir / name), norm_cfg=norm_cfg,
                      batch_size=batch_size or task.batch_size, max_iters=iters or task.iters,
                      seed=seed, val_images=val_images)
    untrained = task.baseline == 'untrained'
    t0 = time.perf_counter()
    out = train_and_evaluate(cfg, eval_untrained=untrained, threads=threads)
    wall = time.perf_counter() - t0
    if task.baseline == 'all_background':
        ann_dir = REPO_ROOT / cfg.val_dataloader.dataset.data_root / \
            cfg.val_dataloader.dataset.data_prefix.seg_map_path
        bl = {'mIoU': all_background_miou(ann_dir, limit=val_images)}
        bl_name = 'all background'
    else:
        bl, bl_name = out['untrained'], 'untrained model'
    norm = cfg.model.backbone.norm_cfg
    rows = []
    for key, label in task.metrics.items():
        # mmdet's CocoMetric returns no keys when a model detects nothing at all: mAP 0
        value = _percent(key, out['metrics'].get(key, 0.0))
        base = _percent(key, (bl or {}).get(key, 0.0))
        rows.append(dict(task=name, title=task.title, metric=label, value=value,
                         baseline=base, baseline_name=bl_name, norm=dict(norm),
                         iters=cfg.train_cfg.max_iters,
                         batch_size=cfg.train_dataloader.batch_size, wall_s=wall,
                         headline=label in task.headline_metrics,
                         beats=value >= base + MARGIN))
    return rows


def run_demo(tasks: Iterable[str], work_dir: str, **kwargs) -> list[dict]:
    """Run :func:`run_task` for every task; write ``results.json`` to ``work_dir``."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for name in tasks:
        print(f'\n=== {name}: {TASKS[name].title} ===', flush=True)
        rows += run_task(name, work_dir, **kwargs)
        (work_dir / 'results.json').write_text(json.dumps(rows, indent=1))
    return rows


def format_demo_table(rows: list[dict]) -> str:
    """A markdown table: task, metric, LCN value, baseline, gain, verdict."""
    lines = ['| task | metric | trained | trivial baseline | gain | iters x batch | time |',
             '|---|---|---:|---:|---:|---|---:|']
    for r in rows:
        verdict = 'ok' if r['beats'] else f'NOT > baseline + {MARGIN:g}'
        if not r['headline']:
            verdict = '(extra)'
        lines.append(
            f"| {r['title']} | {r['metric']} ({r['norm']['type']}) | {r['value']:.1f} | "
            f"{r['base_fmt'] if 'base_fmt' in r else format(r['baseline'], '.1f')} "
            f"({r['baseline_name']}) | {r['value'] - r['baseline']:+.1f} {verdict} | "
            f"{r['iters']} x {r['batch_size']} | {r['wall_s']:.0f} s |")
    return '\n'.join(lines)


def plot_demo(rows: list[dict], path: str) -> None:
    """Bar chart: each metric next to its trivial baseline."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    labels = [f"{r['task']}\n{r['metric']}" for r in rows]
    xs = range(len(rows))
    fig, ax = plt.subplots(figsize=(1.6 * len(rows) + 2, 3.6))
    ax.bar([x - 0.2 for x in xs], [r['baseline'] for r in rows], 0.4, color='0.7',
           label='trivial baseline')
    ax.bar([x + 0.2 for x in xs], [r['value'] for r in rows], 0.4, color='tab:red',
           label='trained (LCN)' if all(r['norm']['type'] == 'LCN' for r in rows)
           else 'trained')
    for x, r in zip(xs, rows):
        ax.text(x + 0.2, r['value'], f"{r['value']:.1f}", ha='center', va='bottom', fontsize=8)
    ax.set_xticks(list(xs), labels, fontsize=8)
    ax.set_ylabel('% (COCO mAP / mIoU)')
    ax.set_title('make demo: trained from scratch on 2 CPU cores vs trivial baselines',
                 fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
