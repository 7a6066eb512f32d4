"""Inference on images far larger than training tiles: backbone cut, scene loading, peak memory.

Used by ``tools/analysis_tools/huge_image_inference.py`` (whole-image peak RSS, LCN vs GN) and
``tools/analysis_tools/tiled_inference.py`` (sliding-window inference equal to whole-image
inference).
Random weights: these are about memory and exactness, not accuracy.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

from lcn_mm.apis.errors import UserInputError

__all__ = ['ResNetCut', 'build_backbone', 'load_scene', 'synthetic_scene', 'peak_rss_mib',
           'run_measured']


class ResNetCut(nn.Module):
    """The first ``num_stages`` stages of mmdet's ResNet; returns the last stage's map."""

    def __init__(self, norm: str = 'LCN', depth: int = 18, num_stages: int = 1,
                 width: int = 32, window: int = 63, groups: int = 8) -> None:
        super().__init__()
        import mmdet.models  # noqa: F401  registers ResNet
        from mmengine.registry import MODELS

        import lcn_mm  # noqa: F401  registers LCN
        if norm == 'LCN':
            norm_cfg = dict(type='LCN', num_groups=groups, window_size=window)
        elif norm == 'GN':
            norm_cfg = dict(type='GN', num_groups=groups)
        else:
            raise UserInputError(f'norm must be LCN or GN, got {norm!r}')
        self.norm, self.window = norm, window
        self.body = MODELS.build(dict(
            type='mmdet.ResNet', depth=depth, num_stages=num_stages,
            strides=(1, 2, 2, 2)[:num_stages], dilations=(1,) * num_stages,
            out_indices=(num_stages - 1,), stem_channels=width, base_channels=width,
            norm_cfg=norm_cfg, norm_eval=False))
        self.body.init_weights()
        self.body.train(False)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)[-1]


def build_backbone(norm: str, **kwargs) -> ResNetCut:
    """A seeded :class:`ResNetCut` in eval mode (same weights for LCN and GN)."""
    torch.manual_seed(0)
    return ResNetCut(norm, **kwargs).eval()


def load_scene(path: str, channels: int = 3) -> Tensor:
    """Read a GeoTIFF/TIFF/PNG/JPEG scene as (1, channels, H, W) float32, normalised.

    Single-band images are repeated to ``channels``. Values are scaled by the image's 1st-99th
    percentile (nodata, i.e. the most negative int16 value -9999 of the Landsat scene, and
    non-finite values set to the low percentile). Unreadable files raise UserInputError.
    """
    if not os.path.isfile(path):
        raise UserInputError(f'image not found: {path}')
    try:
        if path.lower().endswith(('.tif', '.tiff')):
            import tifffile
            arr = tifffile.imread(path)
        else:
            from PIL import Image
            with Image.open(path) as im:
                arr = np.asarray(im)
    except Exception as exc:  # noqa: BLE001  any decoder error means "cannot read"
        raise UserInputError(f'cannot read image {path}: {type(exc).__name__}: '
                             f'{" ".join(str(exc).split())[:200]}') from exc
    if arr.size == 0:
        raise UserInputError(f'cannot read image {path}: no image data (corrupt or empty file)')
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim == 3 and arr.shape[-1] <= 4 and arr.shape[0] > 4:
        arr = arr.transpose(2, 0, 1)
    if arr.ndim != 3:
        raise UserInputError(f'cannot use image {path}: shape {arr.shape} is not (H, W) or '
                             '(H, W, C)')
    x = arr.astype(np.float32)
    valid = np.isfinite(x) & (x != -9999)
    if not valid.any():
        raise UserInputError(f'image {path} has no valid pixels')
    lo, hi = np.percentile(x[valid], [1, 99])
    x[~valid] = lo
    x = ((x - np.float32(lo)) / np.float32(max(hi - lo, 1e-6))).astype(np.float32, copy=False)
    t = torch.from_numpy(x)[:channels]
    if t.shape[0] < channels:
        t = t.repeat(-(-channels // t.shape[0]), 1, 1)[:channels]
    return t.unsqueeze(0).contiguous()


def synthetic_scene(size: int, channels: int = 3, seed: int = 0) -> Tensor:
    """A (1, channels, size, size) float32 scene: noise plus a brightness ramp (no big copies)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, channels, size, size, generator=g)
    x.add_(torch.linspace(-2, 2, size).view(1, 1, 1, size))
    return x


def peak_rss_mib() -> float:
    """This process's peak resident set size so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    """This process's current resident set size in MiB (Linux /proc; peak elsewhere)."""
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20
    except OSError:
        return peak_rss_mib()


def run_measured(args: list, timeout: float = 3600) -> dict:
    """Run ``python args...`` (a worker printing one JSON line last); add its peak RSS.

    The child's own peak RSS comes from ``os.wait4`` (``ru_maxrss`` of that child only).
    """
    proc = subprocess.Popen([sys.executable, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    start = time.time()
    out, err = proc.communicate(timeout=timeout)
    # communicate() reaped the child; its rusage is in RUSAGE_CHILDREN only cumulatively, so
    # workers also report their own peak. Prefer the worker's report.
    result = {'returncode': proc.returncode, 'wall_s': round(time.time() - start, 1)}
    lines = [ln for ln in out.splitlines() if ln.startswith('{')]
    if proc.returncode != 0 or not lines:
        result['error'] = err.strip().splitlines()[-3:] if err.strip() else ['no output']
        return result
    result.update(json.loads(lines[-1]))
    return result


def measure_forward(model: Optional[nn.Module], x: Tensor, fn=None) -> dict:
    """Peak RSS before and after one no-grad forward (in this process); output shape/finite."""
    before_peak, before_now = peak_rss_mib(), current_rss_mib()
    start = time.time()
    with torch.no_grad():
        y = fn(x) if fn is not None else model(x)
    seconds = time.time() - start
    return dict(rss_before_mib=round(before_now), peak_before_mib=round(before_peak),
                peak_after_mib=round(peak_rss_mib()), forward_s=round(seconds, 1),
                input_mib=round(x.numel() * x.element_size() / 2**20),
                output_shape=list(y.shape),
                output_mib=round(y.numel() * y.element_size() / 2**20),
                finite=bool(torch.isfinite(y).all()))


# ----------------------------------------------------------------- the measurement matrix

def scene_from_spec(spec: str) -> Tensor:
    """``synthetic:<size>`` or a file path (see :func:`load_scene`)."""
    if spec.startswith('synthetic:'):
        return synthetic_scene(int(spec.split(':', 1)[1]))
    return load_scene(spec)


def worker(case: str, norm: str, image: str = '', stages: int = 1, width: int = 32,
           window: int = 63, groups: int = 8, op_shape: tuple = (1, 32, 2048, 2048)) -> dict:
    """One measurement in this process (run it in a fresh subprocess): 'net' or 'op'."""
    import torch.nn.functional as F

    from ..ops import local_context_norm
    torch.set_num_threads(int(os.environ.get('LCN_MM_THREADS', torch.get_num_threads())))
    if case == 'net':
        model = build_backbone(norm, num_stages=stages, width=width, window=window,
                               groups=groups)
        x = scene_from_spec(image)
        res = measure_forward(model, x)
        res.update(case='net', norm=norm, image=image, shape=list(x.shape))
        return res
    if case == 'op':
        x = torch.empty(op_shape).normal_()
        x.add_(torch.linspace(-2, 2, op_shape[-1]))
        if norm == 'LCN':
            def fn(t):
                return local_context_norm(t, groups, window)
        else:
            def fn(t):
                return F.group_norm(t, groups)
        res = measure_forward(None, x, fn)
        extra = res['peak_after_mib'] - res['rss_before_mib']
        res.update(case='op', norm=norm, shape=list(op_shape), extra_mib=extra,
                   extra_over_input=round(extra / res['input_mib'], 2),
                   native=os.environ.get('LCN_MM_NATIVE', '1') != '0')
        return res
    raise ValueError(case)
