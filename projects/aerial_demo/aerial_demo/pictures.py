"""``make demo``'s pictures: what each trained model predicts on a validation image.

One figure per task: the val image with its ground truth, the same image with the trained
model's predictions (boxes, instance masks or class masks), and optionally a row with the image
under an illumination ramp (:func:`aerial_demo.visualize.illumination_ramp`) as predicted by a
GN-trained and the LCN-trained model side by side. Inference goes through the config's own test
pipeline (minus label loading) and ``model.test_step``, as mmdet/mmseg's inference APIs do.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from mmengine.config import Config

from .visualize import _iou, illumination_ramp

__all__ = ['load_model', 'predict', 'val_example', 'plot_task']

#: Predictions drawn above this score (boxes, instance masks).
SCORE_THR = 0.3


def load_model(cfg: Config, checkpoint: str) -> torch.nn.Module:
    """The config's model with the checkpoint's weights (EMA weights where EMA was used)."""
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import load_checkpoint
    init_default_scope(cfg.default_scope)
    model = MODELS.build(copy.deepcopy(cfg.model))
    load_checkpoint(model, checkpoint, map_location='cpu', logger='silent')
    return model.eval()


def _pipeline(cfg: Config):
    from mmcv.transforms import Compose
    steps = [dict(t) for t in cfg.test_dataloader.dataset.pipeline
             if 'LoadAnnotations' not in t['type']]
    steps[0] = dict(type=f'{cfg.default_scope}.LoadImageFromNDArray')
    return Compose(steps)


@torch.no_grad()
def predict(model: torch.nn.Module, cfg: Config, img_bgr: np.ndarray):
    """One image (H, W, 3 uint8 BGR, as mmcv loads it) -> the model's data sample."""
    data = _pipeline(cfg)(dict(img=img_bgr))
    return model.test_step(dict(inputs=[data['inputs']], data_samples=[data['data_samples']]))[0]


def val_example(cfg: Config, index: Optional[int] = None) -> dict:
    """A val image with ground truth: ``img`` (BGR), ``boxes``, ``polygons`` or ``seg``.

    Default: the val image with the most instances (or labelled pixels), the most telling.
    """
    import mmcv
    from mmengine.registry import DATASETS, init_default_scope
    init_default_scope(cfg.default_scope)
    ds_cfg = copy.deepcopy(cfg.val_dataloader.dataset)
    ds_cfg.pop('indices', None)
    dataset = DATASETS.build(ds_cfg)
    infos = [dataset.get_data_info(i) for i in range(len(dataset))]
    if infos[0].get('seg_map_path'):
        counts = [int((mmcv.imread(i['seg_map_path'], flag='unchanged') == 1).sum())
                  for i in infos]
    else:
        counts = [len(i['instances']) for i in infos]
    info = infos[int(np.argmax(counts)) if index is None else index]
    out = dict(img=mmcv.imread(info['img_path']), path=info['img_path'])
    if info.get('seg_map_path'):
        out['seg'] = mmcv.imread(info['seg_map_path'], flag='unchanged')
    else:
        out['boxes'] = np.array([i['bbox'] for i in info['instances']]).reshape(-1, 4)
        masks = [i.get('mask') for i in info['instances']]
        out['polygons'] = [m for m in masks if isinstance(m, list)]
        rles = [m for m in masks if isinstance(m, dict)]  # COCO RLE (the nuclei)
        if rles:
            from pycocotools import mask as mask_utils
            out['outlines'] = mask_utils.decode(rles).transpose(2, 0, 1).astype(bool)
    return out


def _draw(ax, img_bgr: np.ndarray, title: str, boxes=None, polygons=None, masks=None,
          outlines=None, seg=None, color: str = 'lime') -> None:
    from matplotlib.patches import Polygon, Rectangle
    ax.imshow(img_bgr[..., ::-1])
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_title(title, fontsize=8)
    if seg is not None:
        ax.imshow(np.ma.masked_equal(seg.astype(np.uint8), 0), cmap='autumn', alpha=0.55,
                  vmin=0, vmax=1)
    if masks is not None and len(masks):
        rng = np.random.default_rng(0)
        overlay = np.zeros(masks.shape[1:] + (4, ))
        for m in masks:
            overlay[m] = (*rng.uniform(0.2, 1.0, 3), 0.55)
        ax.imshow(overlay)
    for m in outlines if outlines is not None else []:
        ax.contour(m, levels=[0.5], colors=[color], linewidths=0.8)
    for poly in polygons or []:
        for ring in poly or []:
            ax.add_patch(Polygon(np.asarray(ring).reshape(-1, 2), fill=False, lw=0.8,
                                 ec=color))
    for x0, y0, x1, y1 in (boxes if boxes is not None else []):
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=0.8, ec=color))


def _pred_layers(sample) -> dict:
    if hasattr(sample, 'pred_sem_seg'):
        return dict(seg=sample.pred_sem_seg.data[0].numpy())
    inst = sample.pred_instances
    keep = inst.scores >= SCORE_THR
    out = dict(boxes=inst.bboxes[keep].numpy())
    if 'masks' in inst:
        out['masks'] = inst.masks[keep].numpy().astype(bool)
    return out


def plot_task(title: str, cfg: Config, checkpoint: str, out: str,
              compare: Optional[dict] = None, dark: float = 0.3) -> dict:
    """Ground truth | LCN prediction, and with ``compare`` (name -> (cfg, checkpoint), e.g. a
    GN model) a second row: the image under an illumination ramp (top 1 -> bottom ``dark``)
    predicted by each model. Returns what was drawn (counts, IoUs for segmentation)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    ex = val_example(cfg)
    model = load_model(cfg, checkpoint)
    pred = _pred_layers(predict(model, cfg, ex['img']))
    rows = 2 if compare else 1
    fig, axes = plt.subplots(rows, 2, figsize=(7, 3.6 * rows), squeeze=False)
    gt_layers = ({'seg': ex['seg']} if 'seg' in ex else
                 {k: ex[k] for k in ('boxes', 'polygons', 'outlines') if k in ex})
    n_gt = int((ex['seg'] == 1).sum()) if 'seg' in ex else len(ex['boxes'])
    _draw(axes[0, 0], ex['img'], f'ground truth ({Path(ex["path"]).name})', **gt_layers)
    stats = dict(image=ex['path'])
    if 'seg' in ex:
        stats['lcn_iou'] = _iou(pred['seg'], ex['seg'])
        label = f'LCN model: IoU {stats["lcn_iou"]:.1f}'
    else:
        stats.update(gt=n_gt, predicted=len(pred['boxes']))
        label = f'LCN model: {len(pred["boxes"])} predicted (score >= {SCORE_THR}), {n_gt} true'
    _draw(axes[0, 1], ex['img'], label, color='red', **pred)
    if compare:
        ramped = illumination_ramp(ex['img'], dark)
        models = dict(compare, LCN=(cfg, checkpoint))
        for ax, (name, (c, ck)) in zip(axes[1], list(models.items())[-2:]):
            p = _pred_layers(predict(load_model(c, ck), c, ramped))
            if 'seg' in p:
                stats[f'ramp_{name}_iou'] = _iou(p['seg'], ex['seg'])
                text = f'IoU {stats[f"ramp_{name}_iou"]:.1f}'
            else:
                text = f'{len(p["boxes"])} predicted'
            _draw(ax, ramped, f'{name}-trained, illumination ramp 1 -> {dark:g}: {text}',
                  color='red', **p)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return stats
