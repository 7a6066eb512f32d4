"""Seeded photometric shifts that real satellite and aerial tiles show (issue #16, item 4).

The paper's claim is that local normalization is robust to illumination changes *within* an
image. Each shift below is one such change, as a pure function of an image ``(H, W, C)`` and
documented parameters; a ``seed`` decides only what is random about it (ramp direction,
shadow shape and depth, mosaic phase), so every evaluation can be reproduced exactly.

Value range: ``uint8`` images are in ``[0, 255]``, float images in ``[0, 1]``; offsets and
veils are fractions of that range. The output has the input's dtype and is clipped to its
range (uint8 is rounded). Gains act on all channels alike, so RGB and BGR give the same result.

=============  ==================================================================  ============
name           what a tile shows                                                   defaults
=============  ==================================================================  ============
gain_offset    sensor gain / exposure and an additive offset: ``x * gain + off``    0.6, +0.1
ramp           linear illumination ramp across the tile in a seeded direction,     1.0 -> 0.4
               from ``high`` on one edge to ``low`` on the opposite edge
vignette       radial fall-off: gain ``1 - (1 - corner) * (r / r_corner)**2``       corner 0.5
shadow         a cast shadow (cloud, building): a seeded ellipse scaled by a        0.3 - 0.5
               seeded factor in ``[low, high]``; pixels outside are untouched
haze           contrast reduced toward a bright veil: ``(1 - s) x + s * veil``      s 0.5, 0.9
tile_gain      mosaic of neighbouring acquisitions: a checkerboard of ``cell``-px   step 0.3
               cells with gains ``1 +- step / 2`` (neighbours differ by ``step``)
=============  ==================================================================  ============
"""
from __future__ import annotations

import zlib
from typing import Callable, Optional

import numpy as np
from mmcv.transforms import BaseTransform
from mmengine.registry import TRANSFORMS

__all__ = ['SHIFTS', 'apply_shift', 'gain_offset', 'ramp', 'vignette', 'shadow', 'shadow_mask',
           'haze', 'tile_gain', 'PhotometricShift']


def _range(img: np.ndarray) -> float:
    """Full-scale value: 255 for uint8, 1 for float images."""
    if img.dtype == np.uint8:
        return 255.0
    if np.issubdtype(img.dtype, np.floating):
        return 1.0
    raise TypeError(f'expected a uint8 or float image, got {img.dtype}')


def _finish(out: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Clip to the input's range and cast back to its dtype (uint8: rounded)."""
    top = _range(like)
    out = np.clip(out, 0, top)
    return np.rint(out).astype(np.uint8) if like.dtype == np.uint8 else out.astype(like.dtype)


def _scaled(img: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """``img`` times a per-pixel ``gain`` map ``(H, W)``, for every channel."""
    return _finish(img.astype(np.float64) * gain[..., None], img)


def gain_offset(img: np.ndarray, gain: float = 0.6, offset: float = 0.1,
                seed: int = 0) -> np.ndarray:
    """``img * gain + offset * range``: a global exposure change (nothing random)."""
    return _finish(img.astype(np.float64) * gain + offset * _range(img), img)


def ramp_gain(shape: tuple, low: float = 0.4, high: float = 1.0, seed: int = 0) -> np.ndarray:
    """Gain map ``(H, W)`` rising linearly from ``low`` to ``high`` along a seeded direction.

    The direction's angle is uniform in ``[0, 2 pi)``; the tile's extreme corners along it get
    exactly ``low`` and ``high`` (the ramp spans the tile, not more).
    """
    h, w = shape[:2]
    angle = np.random.default_rng(seed).uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    t = xx * np.cos(angle) + yy * np.sin(angle)
    t = (t - t.min()) / max(t.max() - t.min(), 1e-12)
    return low + (high - low) * t


def ramp(img: np.ndarray, low: float = 0.4, high: float = 1.0, seed: int = 0) -> np.ndarray:
    """A linear illumination ramp across the tile (sun angle, terrain, BRDF across a swath)."""
    return _scaled(img, ramp_gain(img.shape, low, high, seed))


def vignette_gain(shape: tuple, corner: float = 0.5) -> np.ndarray:
    """Gain ``1 - (1 - corner) * (r / r_corner)**2``: 1 at the centre, ``corner`` at corners."""
    h, w = shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    r2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / (cy ** 2 + cx ** 2 or 1.0)
    return 1 - (1 - corner) * r2


def vignette(img: np.ndarray, corner: float = 0.5, seed: int = 0) -> np.ndarray:
    """Lens/optics vignetting (aerial frame cameras): darker corners (nothing random)."""
    return _scaled(img, vignette_gain(img.shape, corner))


def shadow_mask(shape: tuple, seed: int = 0) -> np.ndarray:
    """Boolean ``(H, W)`` mask of a seeded ellipse: centre inside the tile, semi-axes 20-45 %
    of the tile size, any orientation (a cloud or building shadow's footprint)."""
    h, w = shape[:2]
    rng = np.random.default_rng(seed)
    cy, cx = rng.uniform(0.25, 0.75) * h, rng.uniform(0.25, 0.75) * w
    ay, ax = rng.uniform(0.2, 0.45, size=2) * np.array([h, w])
    theta = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    u = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)
    v = -(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)
    return (u / ax) ** 2 + (v / ay) ** 2 <= 1


def shadow_factor(low: float = 0.3, high: float = 0.5, seed: int = 0) -> float:
    """The shadow's brightness factor, uniform in ``[low, high]`` from the seed."""
    return float(np.random.default_rng([seed, 1]).uniform(low, high))


def shadow(img: np.ndarray, low: float = 0.3, high: float = 0.5, seed: int = 0) -> np.ndarray:
    """A cast shadow: inside :func:`shadow_mask` the image is scaled by
    :func:`shadow_factor` (30-50 % brightness by default), outside it is unchanged."""
    gain = np.where(shadow_mask(img.shape, seed), shadow_factor(low, high, seed), 1.0)
    return _scaled(img, gain)


def haze(img: np.ndarray, strength: float = 0.5, veil: float = 0.9,
         seed: int = 0) -> np.ndarray:
    """Atmospheric haze: ``(1 - strength) * img + strength * veil * range``.

    Every difference between two pixels (contrast) shrinks by ``1 - strength``; the image moves
    toward a bright, grey veil (nothing random).
    """
    top = _range(img)
    return _finish((1 - strength) * img.astype(np.float64) + strength * veil * top, img)


def tile_gain_map(shape: tuple, step: float = 0.3, cell: int = 128,
                  seed: int = 0) -> np.ndarray:
    """Checkerboard gain ``1 +- step / 2`` on ``cell``-px cells; the seed picks which cells are
    bright and shifts the grid by up to one cell, so seams fall at different places."""
    h, w = shape[:2]
    rng = np.random.default_rng(seed)
    oy, ox = rng.integers(0, cell, size=2)
    sign = 1 if rng.random() < 0.5 else -1
    yy, xx = np.mgrid[0:h, 0:w]
    parity = ((yy + oy) // cell + (xx + ox) // cell) % 2
    return 1 + sign * step / 2 * np.where(parity == 0, 1.0, -1.0)


def tile_gain(img: np.ndarray, step: float = 0.3, cell: int = 128, seed: int = 0) -> np.ndarray:
    """Per-tile gain changes between neighbouring tiles of a mosaic (different acquisitions or
    radiometric calibration): neighbouring cells' gains differ by ``step``."""
    return _scaled(img, tile_gain_map(img.shape, step, cell, seed))


#: name -> shift function ``f(img, **params, seed=...)``; the defaults are the study's setting.
SHIFTS: dict[str, Callable[..., np.ndarray]] = {
    'gain_offset': gain_offset, 'ramp': ramp, 'vignette': vignette, 'shadow': shadow,
    'haze': haze, 'tile_gain': tile_gain}


def apply_shift(img: np.ndarray, name: str, seed: int = 0, **params) -> np.ndarray:
    """Apply the shift ``name`` of :data:`SHIFTS` with ``params`` (defaults where not given)."""
    if name not in SHIFTS:
        raise KeyError(f'unknown shift {name!r}; choose from {sorted(SHIFTS)}')
    return SHIFTS[name](img, seed=seed, **params)


@TRANSFORMS.register_module(force=True)
class PhotometricShift(BaseTransform):
    """Pipeline transform: apply shift ``shift`` to ``results['img']`` (insert it right after
    ``LoadImageFromFile`` in a val pipeline).

    Each image gets its own draw, reproducible: the shift's seed is ``seed`` mixed with the
    CRC32 of the image's file name, so the same image always gets the same ramp direction or
    shadow whatever the order of evaluation.

    Args:
        shift: a name of :data:`SHIFTS`.
        seed: base seed of the evaluation.
        params: the shift's parameters (defaults of the shift function otherwise).
    """

    def __init__(self, shift: str, seed: int = 0, params: Optional[dict] = None) -> None:
        if shift not in SHIFTS:
            raise KeyError(f'unknown shift {shift!r}; choose from {sorted(SHIFTS)}')
        self.shift, self.seed, self.params = shift, seed, dict(params or {})

    def image_seed(self, path: Optional[str]) -> int:
        """The per-image seed: base seed mixed with the file name's CRC32."""
        name = str(path).replace('\\', '/').rsplit('/', 1)[-1] if path else ''
        return int(np.random.SeedSequence([self.seed, zlib.crc32(name.encode())])
                   .generate_state(1)[0])

    def transform(self, results: dict) -> dict:
        results['img'] = apply_shift(results['img'], self.shift,
                                     seed=self.image_seed(results.get('img_path')),
                                     **self.params)
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(shift={self.shift!r}, seed={self.seed}, '
                f'params={self.params})')
