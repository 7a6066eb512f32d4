"""An independent oracle for LCN: exact two-pass float64 statistics, window offset by window
offset, written without looking at (or importing) ``lcn_mm.ops``.

For every pixel (i, j) the window is rows ``i-(kh-1)//2 .. i+kh//2`` and columns likewise,
clipped to the map. The loop runs over the kh x kw offsets of the window; each offset adds the
shifted map where the shifted pixel is real. First pass: sum and count -> mean. Second pass:
sum of squared deviations from that mean -> population variance. No prefix sums, no shifts,
no E[x^2] - E[x]^2, so nothing cancels. Everything is plain differentiable tensor code, so
autograd through :func:`oracle_lcn` gives float64 reference gradients.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


def _shifted(t: Tensor, di: int, dj: int) -> Tensor:
    """``out[..., i, j] = t[..., i + di, j + dj]`` where that pixel exists, else 0."""
    h, w = t.shape[-2:]
    out = torch.zeros_like(t)
    i0, i1 = max(0, -di), min(h, h - di)
    j0, j1 = max(0, -dj), min(w, w - dj)
    if i0 < i1 and j0 < j1:
        out[..., i0:i1, j0:j1] = t[..., i0 + di:i1 + di, j0 + dj:j1 + dj]
    return out


def oracle_stats(x: Tensor, groups: int, kh: int, kw: int):
    """Window mean and population variance, each (N, G, 1, H, W), float64."""
    x = x.double()
    n, c, h, w = x.shape
    xg = x.reshape(n, groups, c // groups, h, w)
    ones = torch.ones_like(xg)
    offsets = [(di, dj) for di in range(-((kh - 1) // 2), kh // 2 + 1)
               for dj in range(-((kw - 1) // 2), kw // 2 + 1)
               if abs(di) < h and abs(dj) < w]
    total = torch.zeros(n, groups, 1, h, w, dtype=torch.float64)
    count = torch.zeros_like(total)
    for di, dj in offsets:
        total += _shifted(xg, di, dj).sum(2, keepdim=True)
        count += _shifted(ones, di, dj).sum(2, keepdim=True)
    mean = total / count
    dev = torch.zeros_like(total)
    for di, dj in offsets:
        valid = _shifted(ones, di, dj)
        dev += (((_shifted(xg, di, dj) - mean) * valid) ** 2).sum(2, keepdim=True)
    return mean, dev / count


def oracle_lcn(x: Tensor, groups: int, kh: int, kw: Optional[int] = None,
               weight: Optional[Tensor] = None, bias: Optional[Tensor] = None,
               eps: float = 1e-5, detach_stats: bool = False) -> Tensor:
    """LCN output in float64 from :func:`oracle_stats` (``detach_stats``: no gradient through
    the window mean and variance, as in the authors' code)."""
    kw = kh if kw is None else kw
    n, c, h, w = x.shape
    mean, var = oracle_stats(x, groups, kh, kw)
    if detach_stats:
        mean, var = mean.detach(), var.detach()
    xg = x.double().reshape(n, groups, c // groups, h, w)
    y = ((xg - mean) / torch.sqrt(var + eps)).reshape(n, c, h, w)
    if weight is not None:
        y = y * weight.double().view(1, -1, 1, 1)
    if bias is not None:
        y = y + bias.double().view(1, -1, 1, 1)
    return y


def group_norm_formula(x: Tensor, groups: int, eps: float = 1e-5) -> Tensor:
    """GroupNorm written out: two-pass mean and population variance over (C/G, H, W)."""
    n, c, h, w = x.shape
    xg = x.double().reshape(n, groups, -1)
    mean = xg.mean(-1, keepdim=True)
    var = ((xg - mean) ** 2).mean(-1, keepdim=True)
    return ((xg - mean) / torch.sqrt(var + eps)).reshape(n, c, h, w)


def hard_maps(size: int = 256, seed: int = 0, width: Optional[int] = None) -> dict:
    """Float32 inputs that defeat a single shift constant (issue #14), each (1, 2, size,
    width or size).

    Each is a group of two channels (pass ``groups=1``) whose values stay well conditioned
    locally (noise std >= 0.1 wherever the data are not locally constant).
    """
    gen = torch.Generator().manual_seed(seed)
    h, w = size, width or size

    def noise(std: float) -> Tensor:
        return std * torch.randn(2, h, w, generator=gen, dtype=torch.float64)

    cols = torch.arange(w)[None, None, :]
    rows = torch.arange(h)[None, :, None]
    flat = torch.full((2, h, w), 1e4, dtype=torch.float64)
    flat[:, 0, 0] = 0.0                                          # first pixel 0, the rest 1e4
    offset = 1e4 + noise(0.1)
    offset[:, 0, 0] = 0.0
    step = torch.where(cols < w // 2, 0.0, 1e4) + noise(0.1)     # 0 | 1e4, noise 0.1
    step_flat = torch.where(cols < w // 2, 0.0, 1e4).double().expand(2, h, w)
    step_k = torch.where(cols < w // 2, 0.0, 1000.0) + noise(0.1)
    nodata = noise(1.0)
    nodata[:, : h // 2, : w // 2] = -9999.0                      # Landsat-style nodata block
    ramp = torch.linspace(0, 2000, w, dtype=torch.float64)[None, None, :] + noise(0.1)
    outliers = noise(1.0)
    outliers.view(2, -1)[:, ::997] = 1e4                         # scattered outliers
    rows_step = torch.where(rows < h // 3, -1e4, 1e4) + noise(0.1)
    maps = dict(flat=flat, offset=offset, step=step, step_flat=step_flat, step_1000=step_k,
                nodata=nodata, ramp=ramp, outliers=outliers, rows_step=rows_step)
    return {k: v.clone().float()[None] for k, v in maps.items()}
