"""The demo and study tasks on ``data/`` and the norms the study compares."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from lcn_mm.presets import norm_cfg

__all__ = ['Task', 'TASKS', 'DEMO_TASKS', 'NORMS', 'norm_cfg_for', 'all_background_miou', 'percent',
           'REPO_ROOT']

#: The repository root (configs and data paths in the demo configs are relative to it).
REPO_ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Task:
    """One demo task: a config and the metrics reported for it.

    Attributes:
        name: short key (``det``, ``nuclei``, ``inst``, ``seg``, ``roads``).
        title: human-readable description.
        config: path relative to the repository root.
        metrics: runner metric key -> column label (e.g. ``'coco/bbox_mAP'`` -> ``'bbox mAP'``).
        headline: labels ``make demo`` requires to beat the baseline (default: the first);
            the others are printed for information.
        iters: training iterations of ``make demo`` (at ``batch_size``).
        batch_size: training batch size of ``make demo``.
        study_iters: iterations at batch 4 of a ``projects/aerial_demo/tools/compare_norms.py``
            run (shorter than the demo's where the task learns within that, so that many runs fit).
        baseline: ``'untrained'`` (evaluate the freshly initialised model before training) or
            ``'all_background'`` (mIoU of predicting background everywhere, from the labels).
    """

    name: str
    title: str
    config: str
    metrics: dict = field(default_factory=dict)
    headline: tuple = ()
    iters: int = 100
    batch_size: int = 4
    baseline: str = 'untrained'
    study_iters: int = 100

    @property
    def headline_metrics(self) -> tuple:
        return self.headline or (next(iter(self.metrics.values())), )


TASKS: dict[str, Task] = {
    'det': Task('det', 'NEON tree detection (FCOS R18-FPN64)',
                'projects/aerial_demo/configs/fcos_r18_fpn64_lcn_neon-trees.py',
                {'coco/bbox_mAP': 'bbox mAP', 'coco/bbox_mAP_50': 'bbox AP50'},
                # AP50: the usual tree-crown score (crown edges are fuzzy); 200 steps give
                # 3-4 bbox mAP, too close to the pass line to be steady (TASKS.md)
                headline=('bbox AP50', ),
                iters=200, batch_size=4, baseline='untrained', study_iters=120),
    'inst': Task('inst', 'SpaceNet building instances (Mask R-CNN R18x0.5-FPN64)',
                 'projects/aerial_demo/configs/mask-rcnn_r18_fpn64_lcn_spacenet-buildings.py',
                 {'coco/bbox_mAP': 'bbox mAP', 'coco/segm_mAP': 'mask mAP',
                  'coco/bbox_mAP_50': 'bbox AP50', 'coco/segm_mAP_50': 'mask AP50'},
                 headline=('bbox mAP', 'mask mAP'),
                 iters=1200, batch_size=4, baseline='untrained', study_iters=1200),
    'nuclei': Task('nuclei', 'DSB2018 nuclei instances (Mask R-CNN R18x0.5-FPN64)',
                   'projects/aerial_demo/configs/mask-rcnn_r18_fpn64_lcn_nuclei.py',
                   {'coco/segm_mAP': 'mask mAP', 'coco/segm_mAP_50': 'mask AP50',
                    'coco/bbox_mAP': 'bbox mAP', 'coco/bbox_mAP_50': 'bbox AP50'},
                   headline=('mask mAP', 'mask AP50'),
                   iters=300, batch_size=4, baseline='untrained', study_iters=300),
    'seg': Task('seg', 'SpaceNet building segmentation (Semantic FPN R18)',
                'projects/aerial_demo/configs/fpn_r18_lcn_spacenet-seg-buildings.py',
                {'mIoU': 'mIoU'}, iters=150, batch_size=4, baseline='all_background',
                study_iters=100),
    'roads': Task('roads', 'SpaceNet road segmentation (Semantic FPN R18)',
                  'projects/aerial_demo/configs/fpn_r18_lcn_spacenet-seg-roads.py',
                  {'mIoU': 'mIoU'}, iters=150, batch_size=4, baseline='all_background',
                  study_iters=100),
}
#: What ``make demo`` runs: one task per kind (detection, instances, semantic segmentation).
#: Instances are the nuclei: the building scene (``inst``, 33 distinct training buildings, 10 val)
#: cannot carry a from-scratch pass/fail rule (projects/aerial_demo/TASKS.md); a study task now.
DEMO_TASKS = ['det', 'nuclei', 'roads']

#: The norms of the study: name -> norm_cfg (lcn_mm.presets with the demo's overrides: GN/LCN
#: 16 groups, which divide every width of the demo models, 32 ... 512; LN over C,H,W).
#: LCN window 7: best of 7 / 15 / 31 on the roads val split (docs/results.md, LCN window sweep).
NORMS: dict[str, dict] = {
    'BN': norm_cfg('BN'),
    'GN': norm_cfg('GN', num_groups=16),
    'IN': norm_cfg('IN'),
    'LN': norm_cfg('LNCHW'),
    'PN': norm_cfg('PN'),
    'LCN': norm_cfg('LCN', num_groups=16, window_size=7),
}


def norm_cfg_for(name: str, window_size: Optional[int] = None,
                 num_groups: Optional[int] = None) -> dict:
    """The study's ``norm_cfg`` for ``name``; LCN/GN ``window_size``/``num_groups`` override."""
    if name not in NORMS:
        raise KeyError(f'unknown norm {name!r}; choose from {sorted(NORMS)}')
    if window_size is not None and name != 'LCN':
        raise ValueError('window_size is an LCN argument')
    if num_groups is not None and name not in ('LCN', 'GN'):
        raise ValueError('num_groups is a GN/LCN argument')
    overrides = {k: v for k, v in (('window_size', window_size), ('num_groups', num_groups))
                 if v is not None}
    return norm_cfg(NORMS[name]['type'], NORMS[name], **overrides)


def percent(key: str, value: float) -> float:
    """mmdet reports COCO mAP in [0, 1], mmseg mIoU in %: use % throughout."""
    return value * 100 if key.startswith('coco/') else value


def all_background_miou(ann_dir: Path, num_classes: int = 2,
                        limit: Optional[int] = None) -> float:
    """mIoU (%) of predicting class 0 everywhere, over the label PNGs in ``ann_dir``.

    Background IoU is the background fraction, every other class scores 0, as mmseg's
    IoUMetric averages them (classes absent from both prediction and labels are NaN and skipped).
    """
    from PIL import Image
    files = sorted(Path(ann_dir).glob('*.png'))[:limit]
    counts = np.zeros(num_classes, dtype=np.int64)
    for f in files:
        lab = np.asarray(Image.open(f))
        counts += np.bincount(lab[lab < num_classes].ravel(), minlength=num_classes)
    total = counts.sum()
    ious = [counts[0] / total] + [0.0 if counts[c] > 0 else np.nan
                                  for c in range(1, num_classes)]
    return float(np.nanmean(ious) * 100)
