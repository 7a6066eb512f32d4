"""``RandomTranspose``: swap the image axes (x <-> y), with boxes, masks and label maps.

Overhead imagery has no "up". mmcv/mmdet's ``RandomFlip`` (horizontal, vertical, diagonal)
gives 4 of the 8 symmetries of the square; a transpose with probability 0.5 after it gives
all 8 (every 90-degree rotation and mirror), uniformly when the flip picks each of its
directions with probability 0.25. Registered in mmengine's root ``TRANSFORMS``, so the mmdet
and mmseg scopes find it.
"""
from __future__ import annotations

import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness
from mmengine.registry import TRANSFORMS

__all__ = ['RandomTranspose']


def _transpose_masks(masks):
    """mmdet ``BitmapMasks`` / ``PolygonMasks`` transposed (x <-> y)."""
    cls = type(masks)
    if isinstance(masks.masks, list):  # PolygonMasks: lists of flat [x0, y0, x1, y1, ...]
        polys = [[np.ascontiguousarray(np.asarray(p).reshape(-1, 2)[:, ::-1]).reshape(-1)
                  for p in obj] for obj in masks.masks]
        return cls(polys, masks.width, masks.height)
    return cls(np.ascontiguousarray(masks.masks.transpose(0, 2, 1)), masks.width,
               masks.height)


@TRANSFORMS.register_module(force=True)
class RandomTranspose(BaseTransform):
    """Transpose the image (and ``gt_bboxes``, ``gt_masks``, ``gt_seg_map``) with ``prob``.

    Required keys: ``img``; optional: ``gt_bboxes`` (mmdet box type or ``N x 4`` xyxy array),
    ``gt_masks`` (``BitmapMasks`` / ``PolygonMasks``), ``gt_seg_map``.
    Modified keys: the same and ``img_shape``. Added key: ``transposed`` (bool).
    """

    def __init__(self, prob: float = 0.5) -> None:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f'prob must be in [0, 1], got {prob}')
        self.prob = prob

    @cache_randomness
    def _choose(self) -> bool:
        return bool(np.random.rand() < self.prob)

    def transform(self, results: dict) -> dict:
        flag = self._choose()
        results['transposed'] = flag
        if not flag:
            return results
        img = results['img']
        results['img'] = np.ascontiguousarray(np.swapaxes(img, 0, 1))
        results['img_shape'] = results['img'].shape[:2]
        boxes = results.get('gt_bboxes')
        if boxes is not None:
            if hasattr(boxes, 'tensor'):  # mmdet HorizontalBoxes
                results['gt_bboxes'] = type(boxes)(boxes.tensor[:, [1, 0, 3, 2]])
            else:
                results['gt_bboxes'] = np.asarray(boxes)[:, [1, 0, 3, 2]]
        if results.get('gt_masks') is not None:
            results['gt_masks'] = _transpose_masks(results['gt_masks'])
        if results.get('gt_seg_map') is not None:
            results['gt_seg_map'] = np.ascontiguousarray(results['gt_seg_map'].T)
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(prob={self.prob})'
