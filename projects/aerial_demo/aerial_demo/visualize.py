"""What BN, GN and LCN do to an illumination change across a large aerial image.

The 900x900 px SpaceNet Atlanta scene is stitched back from the demo tiles, a smooth
illumination ramp (full brightness at the top down to ``dark`` at the bottom, as a cloud
shadow or a sun-angle change across a mosaic would) is applied, and the same scene goes
through semantic-segmentation models trained with BN, GN and LCN
(``projects/aerial_demo/tools/compare_norms.py`` checkpoints). For each model we show a
backbone feature map right after a norm layer (channel-mean of |activation|) and the predicted
building mask.

Global norms (BN: dataset statistics; GN: one mean/variance per image and group) scale the
dark side and the bright side alike, so the dark side keeps weaker features; LCN normalises
each pixel by its neighbourhood, which takes out most of the ramp. The printed ratio is the
mean feature magnitude in the darkest (bottom) quarter divided by that in the brightest (top)
quarter (1 = no ramp left).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from .tasks import REPO_ROOT

__all__ = ['stitch_scene', 'illumination_ramp', 'norm_features_and_prediction',
           'plot_norm_comparison']


def stitch_scene(root: Path = REPO_ROOT / 'data/spacenet_seg/buildings') -> tuple:
    """Reassemble the scene and its labels from ``<name>_x<col>_y<row>`` tiles (train+val).

    Returns ``(image HxWx3 uint8 RGB, labels HxW uint8, val_x0)``; columns >= val_x0 are val.
    """
    from PIL import Image
    tiles = []
    for split in ('train', 'val'):
        for f in sorted((root / 'img_dir' / split).glob('*.jpg')):
            m = re.search(r'_x(\d+)_y(\d+)$', f.stem)
            tiles.append((split, int(m[1]), int(m[2]), f,
                          root / 'ann_dir' / split / f'{f.stem}.png'))
    h = max(y for *_, y, _, _ in [(t[0], t[1], t[2], t[3], t[4]) for t in tiles]) + 256
    w = max(t[1] for t in tiles) + 256
    img = np.zeros((h, w, 3), np.uint8)
    lab = np.zeros((h, w), np.uint8)
    for _, x, y, f, a in tiles:
        img[y:y + 256, x:x + 256] = np.asarray(Image.open(f).convert('RGB'))
        lab[y:y + 256, x:x + 256] = np.asarray(Image.open(a))
    val_x0 = min(t[1] for t in tiles if t[0] == 'val')
    return img, lab, val_x0


def illumination_ramp(img: np.ndarray, dark: float = 0.4) -> np.ndarray:
    """Multiply by a smooth top-to-bottom ramp from 1 down to ``dark`` (a cosine ease).

    Top to bottom, so that the val strip (the right 256 columns) spans bright and dark.
    """
    h = img.shape[0]
    t = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, h))
    gain = 1 - (1 - dark) * t
    return np.clip(img.astype(np.float32) * gain[:, None, None], 0, 255).astype(np.uint8)


def _norm_module(model: torch.nn.Module, layer: str) -> torch.nn.Module:
    """The second norm of the last block of a backbone stage (``layer1`` ... ``layer4``)."""
    block = getattr(model.backbone, layer)[-1]
    return getattr(block, block.norm2_name)


@torch.no_grad()
def norm_features_and_prediction(model: torch.nn.Module, img: np.ndarray,
                                 layer: str = 'layer1') -> tuple:
    """Run ``model`` (mmseg EncoderDecoder, eval) on an RGB image of any size.

    Returns ``(feature HxW map: channel-mean |output| of the norm, predicted labels HxW)``.
    """
    model.eval()
    pre = model.data_preprocessor
    x = torch.from_numpy(img).permute(2, 0, 1).float()[None]
    x = (x - pre.mean.view(1, -1, 1, 1)) / pre.std.view(1, -1, 1, 1)  # image is RGB already
    h, w = img.shape[:2]
    ph, pw = (-h) % 32, (-w) % 32
    x = F.pad(x, (0, pw, 0, ph))
    feats = {}
    hook = _norm_module(model, layer).register_forward_hook(
        lambda m, i, o: feats.__setitem__('out', o))
    try:
        logits = model(x, mode='tensor')
    finally:
        hook.remove()
    logits = F.interpolate(logits, size=x.shape[-2:], mode='bilinear', align_corners=False)
    pred = logits[0, :, :h, :w].argmax(0).numpy().astype(np.uint8)
    f = feats['out'][0].abs().mean(0)
    s = x.shape[-1] // f.shape[-1]
    return f[:h // s, :w // s].numpy(), pred


def _iou(pred: np.ndarray, lab: np.ndarray) -> float:
    inter = np.logical_and(pred == 1, lab == 1).sum()
    union = np.logical_or(pred == 1, lab == 1).sum()
    return float(inter / union * 100) if union else float('nan')


def plot_norm_comparison(models: dict, out: str, dark: float = 0.4,
                         layer: str = 'layer1', title: Optional[str] = None) -> dict:
    """Figure: input / ramped input / labels, then per norm its feature map and prediction.

    Args:
        models: norm name -> built, trained mmseg model (e.g. ``{'BN': ..., 'LCN': ...}``).
        out: PNG path.
    Returns:
        per norm: ``ramp_ratio`` (dark-quarter / bright-quarter feature magnitude) and the
        building IoU on the val strip of the ramped and of the original image.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    img, lab, val_x0 = stitch_scene()
    ramped = illumination_ramp(img, dark)
    n = len(models)
    fig, axes = plt.subplots(n + 1, 3, figsize=(8, 2.7 * (n + 1)))
    for ax in axes.ravel():
        ax.set_xticks([]), ax.set_yticks([])
    axes[0, 0].imshow(img)
    axes[0, 0].set_title('SpaceNet Atlanta scene (0.5 m)', fontsize=8)
    axes[0, 1].imshow(ramped)
    axes[0, 1].set_title(f'illumination ramp, top 1 -> bottom {dark:g}', fontsize=8)
    axes[0, 2].imshow(lab, cmap='gray')
    axes[0, 2].axvline(val_x0, color='y', lw=1)
    axes[0, 2].set_title('building labels (right of line: val)', fontsize=8)
    stats = {}
    for row, (name, model) in enumerate(models.items(), 1):
        feat, pred = norm_features_and_prediction(model, ramped, layer)
        _, pred_orig = norm_features_and_prediction(model, img, layer)
        q = feat.shape[0] // 4
        ratio = float(feat[-q:].mean() / feat[:q].mean())
        iou = _iou(pred[:, val_x0:], lab[:, val_x0:])
        iou_orig = _iou(pred_orig[:, val_x0:], lab[:, val_x0:])
        stats[name] = dict(ramp_ratio=ratio, val_iou_ramped=iou, val_iou_original=iou_orig)
        axes[row, 0].imshow(feat, cmap='magma')
        axes[row, 0].set_title(f'{name}: |features| after {layer} norm\n'
                               f'bottom/top quarter = {ratio:.2f}', fontsize=8)
        axes[row, 1].imshow(ramped)
        axes[row, 1].imshow(np.ma.masked_equal(pred, 0), cmap='autumn', alpha=0.7)
        axes[row, 1].axvline(val_x0, color='y', lw=1)
        axes[row, 1].set_title(f'{name}: predicted buildings\nval IoU {iou:.1f} '
                               f'(no ramp: {iou_orig:.1f})', fontsize=8)
        err = np.zeros(lab.shape + (3,), np.uint8)
        err[(pred == 1) & (lab == 1)] = (255, 255, 255)
        err[(pred == 1) & (lab == 0)] = (255, 60, 60)
        err[(pred == 0) & (lab == 1)] = (60, 140, 255)
        axes[row, 2].imshow(err)
        axes[row, 2].axvline(val_x0, color='y', lw=1)
        axes[row, 2].set_title(f'{name}: white hit, red false +, blue missed', fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=64)
    plt.close(fig)
    return stats
