"""LCN written with standard ONNX-exportable ops only, for ``torch.onnx.export``.

:func:`lcn_mm.ops.local_context_norm` returns this formulation while ``torch.onnx`` exports
(``torch.onnx.is_in_onnx_export()``), so the exported graph has no custom operator and runs in
any ONNX runtime. It computes what the kernels compute (``tests/test_deploy.py`` checks it
against them and against a float64 window-by-window reference) without branching on the
shape, so N, H and W stay dynamic:

* per-pixel group mean ``m`` and variance ``v`` (ReduceMean; ``m`` corrected in float64 by
  the mean of ``x - m``, i.e. its float32 rounding, as the kernels do), a per-(n, g) shift ``c``;
* clipped box sums of ``m - c`` and ``v + (m - c)**2`` as CumSum, then a zero/edge-padded
  prefix and one Slice-minus-Slice per axis: with ``P`` the exclusive prefix sums (``P[0] = 0``)
  padded by ``lo`` zeros in front and ``hi`` copies of ``P[L]`` at the end, the sum over
  ``[i - lo, i + hi]`` clipped to ``[0, L)`` is ``Q[i + lo + hi + 1] - Q[i]``, exact for any
  window, including windows larger than the map;
* the pixel counts by the same box sum of ones.

Inputs are computed in float32 (float64 stays float64). The box sums run in float64 (ONNX CumSum and ONNX Runtime's CPU kernel support it), as the
pure-PyTorch path does, so that ``E[x^2] - E[x]^2`` does not cancel on large maps; runtimes
without float64 (TensorRT) would need a float32 variant, which is not provided.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = ['local_context_norm_onnx']


def _box_sum(t: Tensor, dim: int, lo: int, hi: int) -> Tensor:
    """Clipped box sum over ``[i - lo, i + hi]`` along ``dim``: CumSum, Concat, Slice, Sub."""
    length = t.shape[dim]
    prefix = torch.cumsum(t, dim)
    last = prefix.narrow(dim, length - 1, 1)
    zeros = torch.zeros_like(last)
    parts = [zeros.expand(*[lo + 1 if d == dim % t.dim() else -1 for d in range(t.dim())]),
             prefix]
    if hi:
        parts.append(last.expand(*[hi if d == dim % t.dim() else -1 for d in range(t.dim())]))
    padded = torch.cat(parts, dim)
    return padded.narrow(dim, lo + hi + 1, length) - padded.narrow(dim, 0, length)


def local_context_norm_onnx(x: Tensor, num_groups: int, kh: int, kw: int,
                            weight: Optional[Tensor] = None, bias: Optional[Tensor] = None,
                            eps: float = 1e-5) -> Tensor:
    """LCN of ``x`` (N, C, H, W) with a centred ``kh x kw`` window (see the module docstring)."""
    n, c, h, w = x.shape
    cpg = c // num_groups
    cdt = torch.float64 if x.dtype == torch.float64 else torch.float32
    xg = x.to(cdt).reshape(n, num_groups, cpg, h, w)
    mean_px = xg.mean(2, keepdim=True)
    centred = xg - mean_px
    var_px = (centred * centred).mean(2, keepdim=True)
    # ``mean_px`` is rounded to cdt; the mean of ``centred`` is that rounding (half an ulp of
    # |m|), which would shift the window mean: added back in float64, as the kernels do.
    resid = centred.mean(2, keepdim=True).double()
    shift = mean_px.mean((3, 4), keepdim=True)
    a0 = (mean_px - shift).double()                      # mean_px - c
    a = a0 + resid                                       # the exact group mean m - c
    stats = torch.cat([a, var_px.double() - resid * resid + a * a], 2)   # (N, G, 2, H, W)
    ones = torch.ones_like(stats[:1, :1, :1])            # (1, 1, 1, H, W)
    lo_h, hi_h, lo_w, hi_w = (kh - 1) // 2, kh // 2, (kw - 1) // 2, kw // 2
    boxed = _box_sum(_box_sum(stats, 3, lo_h, hi_h), 4, lo_w, hi_w)
    count = _box_sum(_box_sum(ones, 3, lo_h, hi_h), 4, lo_w, hi_w)
    mean = boxed[:, :, :1] / count
    var = (boxed[:, :, 1:] / count - mean * mean).clamp(min=0)
    rstd = torch.rsqrt(var + eps).to(cdt)
    y = (centred + (a0 - mean).to(cdt)) * rstd   # mean_px - mu formed in float64
    y = y.reshape(n, c, h, w)
    if weight is not None:
        y = y * weight.to(cdt).reshape(1, c, 1, 1)
    if bias is not None:
        y = y + bias.to(cdt).reshape(1, c, 1, 1)
    return y.to(x.dtype)
