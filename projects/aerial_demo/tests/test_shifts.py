"""The photometric shifts of the robustness evaluation: each one's defining property."""
from __future__ import annotations

import numpy as np
import pytest

from aerial_demo import shifts as S


def _flat(value: float = 0.5, shape: tuple = (64, 96, 3), dtype=np.float32) -> np.ndarray:
    return np.full(shape, value, dtype)


def _texture(seed: int = 0, shape: tuple = (64, 96, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(40, 200, size=shape, dtype=np.uint8)


def test_gain_offset_exact() -> None:
    img = _texture()
    out = S.gain_offset(img, gain=0.5, offset=0.1)
    assert np.array_equal(out, np.rint(img * 0.5 + 25.5).astype(np.uint8))
    f = img.astype(np.float32) / 255
    np.testing.assert_allclose(S.gain_offset(f, gain=0.8, offset=-0.05), f * 0.8 - 0.05,
                               atol=1e-6)


@pytest.mark.parametrize('seed', range(6))
def test_ramp_spans_low_to_high_monotone_along_its_direction(seed: int) -> None:
    g = S.ramp_gain((50, 70), low=0.4, high=1.0, seed=seed)
    assert g.min() == pytest.approx(0.4) and g.max() == pytest.approx(1.0)
    # linear: the gain changes by the same amount per pixel along each axis (monotone)
    dx, dy = np.diff(g, axis=1), np.diff(g, axis=0)
    assert np.allclose(dx, dx[0, 0]) and np.allclose(dy, dy[0, 0])
    out = S.ramp(_flat(shape=(50, 70, 3)), seed=seed)
    np.testing.assert_allclose(out[..., 0], 0.5 * g, atol=1e-6)


def test_ramp_direction_depends_on_seed() -> None:
    assert not np.allclose(S.ramp_gain((32, 32), seed=0), S.ramp_gain((32, 32), seed=1))


def test_vignette_corner_ratio() -> None:
    out = S.vignette(_flat(0.8, (65, 65, 3)), corner=0.5)
    centre, corners = out[32, 32, 0], out[[0, 0, -1, -1], [0, -1, 0, -1], 0]
    assert centre == pytest.approx(0.8)
    np.testing.assert_allclose(corners / centre, 0.5, rtol=1e-6)
    # darker with distance from the centre along a row
    assert np.all(np.diff(out[32, 32:, 0]) < 0)


@pytest.mark.parametrize('seed', range(8))
def test_shadow_depth_and_untouched_outside(seed: int) -> None:
    img = _texture(seed).astype(np.float32) / 255
    mask = S.shadow_mask(img.shape, seed)
    out = S.shadow(img, low=0.3, high=0.5, seed=seed)
    assert 0.02 < mask.mean() < 0.8  # a region, neither empty nor the whole tile
    assert np.array_equal(out[~mask], img[~mask])
    ratio = out[mask] / img[mask]
    assert np.allclose(ratio, ratio.flat[0], atol=1e-6)
    assert 0.3 <= ratio.flat[0] <= 0.5
    assert ratio.flat[0] == pytest.approx(S.shadow_factor(0.3, 0.5, seed), abs=1e-6)


def test_haze_shrinks_contrast_toward_the_veil() -> None:
    img = np.random.default_rng(0).uniform(0, 1, (40, 40, 3))
    out = S.haze(img, strength=0.6, veil=0.9)
    np.testing.assert_allclose(out - out.mean(), 0.4 * (img - img.mean()), atol=1e-12)
    np.testing.assert_allclose(out.mean(), 0.4 * img.mean() + 0.6 * 0.9, atol=1e-12)
    assert out.std() == pytest.approx(0.4 * img.std())


@pytest.mark.parametrize('seed', range(4))
def test_tile_gain_neighbours_differ_by_step(seed: int) -> None:
    g = S.tile_gain_map((300, 300), step=0.3, cell=100, seed=seed)
    assert set(np.round(np.unique(g), 9)) == {0.85, 1.15}
    # across every seam between neighbouring cells the gain jumps by exactly the step
    jumps = np.concatenate([np.abs(np.diff(g, axis=0)).ravel(), np.abs(np.diff(g, axis=1)).ravel()])
    assert set(np.round(jumps[jumps > 0], 9)) == {0.3}
    assert (jumps > 0).sum() > 0
    out = S.tile_gain(_flat(0.5, (300, 300, 3)), step=0.3, cell=100, seed=seed)
    np.testing.assert_allclose(out[..., 1], 0.5 * g, atol=1e-6)


@pytest.mark.parametrize('name', list(S.SHIFTS))
def test_seed_reproduces_and_dtype_range_preserved(name: str) -> None:
    img = _texture(3, (64, 64, 3))
    a, b = S.apply_shift(img, name, seed=5), S.apply_shift(img, name, seed=5)
    assert np.array_equal(a, b) and a.dtype == np.uint8 and a.shape == img.shape
    assert not np.array_equal(a, img)  # every default setting changes the image
    bright = np.full((32, 32, 3), 1.0, np.float32)
    out = S.apply_shift(bright, name, seed=1, **({'gain': 2.0} if name == 'gain_offset' else {}))
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1


def test_unknown_shift_and_dtype_rejected() -> None:
    with pytest.raises(KeyError, match='unknown shift'):
        S.apply_shift(_flat(), 'fog')
    with pytest.raises(TypeError, match='uint8 or float'):
        S.haze(np.zeros((4, 4, 3), np.int32))


def test_pipeline_transform_per_image_seed() -> None:
    t = S.PhotometricShift('shadow', seed=0)
    img = _texture(1, (64, 64, 3))
    a = t(dict(img=img.copy(), img_path='/x/a_x0000_y0000.jpg'))['img']
    a2 = t(dict(img=img.copy(), img_path='/other/dir/a_x0000_y0000.jpg'))['img']
    b = t(dict(img=img.copy(), img_path='/x/b.jpg'))['img']
    assert np.array_equal(a, a2)  # same file name, same draw
    assert not np.array_equal(a, b)  # another image, another shadow
    assert np.array_equal(a, S.shadow(img, seed=t.image_seed('a_x0000_y0000.jpg')))
    from mmengine.registry import TRANSFORMS
    assert TRANSFORMS.build(dict(type='PhotometricShift', shift='haze',
                                 params=dict(strength=0.2))).params == {'strength': 0.2}
