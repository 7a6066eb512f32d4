"""aerial_demo.transforms.RandomTranspose: image, boxes, polygon/bitmap masks and label maps
agree."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from aerial_demo.transforms import RandomTranspose


def _sample():
    from mmdet.structures.bbox import HorizontalBoxes
    from mmdet.structures.mask import BitmapMasks, PolygonMasks
    img = np.zeros((40, 60, 3), np.uint8)
    img[5:10, 20:30] = 255  # one 10 x 5 "building" at x 20..30, y 5..10
    poly = PolygonMasks([[np.array([20., 5, 30, 5, 30, 10, 20, 10])]], 40, 60)
    bitmap = BitmapMasks((img[None, ..., 0] > 0).astype(np.uint8), 40, 60)
    seg = (img[..., 0] > 0).astype(np.uint8)
    return dict(img=img, img_shape=(40, 60),
                gt_bboxes=HorizontalBoxes(torch.tensor([[20., 5, 30, 10]])),
                gt_masks=poly, gt_seg_map=seg), bitmap


def test_transpose_moves_everything_together() -> None:
    results, bitmap = _sample()
    out = RandomTranspose(prob=1.0)(results)
    assert out['transposed'] and out['img'].shape == (60, 40, 3) and out['img_shape'] == (60, 40)
    fg = out['img'][..., 0] > 0
    assert out['gt_bboxes'].tensor.tolist() == [[5., 20., 10., 30.]]
    masks = out['gt_masks']
    assert (masks.height, masks.width) == (60, 40)
    np.testing.assert_array_equal(masks.to_ndarray()[0] > 0, fg)
    np.testing.assert_array_equal(out['gt_seg_map'] > 0, fg)
    out2 = RandomTranspose(prob=1.0)(dict(img=_sample()[0]['img'], gt_masks=bitmap))
    np.testing.assert_array_equal(out2['gt_masks'].masks[0] > 0, fg)
    assert (out2['gt_masks'].height, out2['gt_masks'].width) == (60, 40)


def test_transpose_probability() -> None:
    results, _ = _sample()
    assert not RandomTranspose(prob=0.0)(dict(results))['transposed']
    np.random.seed(0)
    flags = [RandomTranspose(prob=0.5)(dict(results))['transposed'] for _ in range(200)]
    assert 60 < sum(flags) < 140
    with pytest.raises(ValueError):
        RandomTranspose(prob=1.5)


def test_registered_for_mmdet_and_mmseg() -> None:
    import mmdet.registry
    import mmseg.registry
    for reg in (mmdet.registry.TRANSFORMS, mmseg.registry.TRANSFORMS):
        t = reg.build(dict(type='RandomTranspose', prob=0.3))
        assert isinstance(t, RandomTranspose) and t.prob == 0.3
