"""LCN written with standard ONNX-exportable ops only, for ``torch.onnx.export``.

:func:`lcn_mm.ops.local_context_norm` returns this formulation while ``torch.onnx`` exports
(``torch.onnx.is_in_onnx_export()``), so the exported graph has no custom operator and runs in
any ONNX runtime. It computes what the kernels compute (``tests/test_ops/test_deploy.py``
checks it against the independent float64 oracle of ``tests/oracle.py`` and against the
kernels) without branching on the shape, so N, H and W stay dynamic:

* per-pixel group mean ``m`` and variance ``v`` (ReduceMean); ``m`` is rounded to float32,
  and the mean of ``x - m`` (that rounding) is added back in float64, as the kernels do;
* a per-(n, g) shift ``c``; ``a = m - c`` formed **in float64** (in float32 it rounds to half
  an ulp of ``|c|``, e.g. 2.4e-4 at 5e3, which ``rstd`` then amplifies: the 1e-2 errors of
  issue #14's step maps came from this, not from the sums);
* window means of ``a`` and ``v + a**2`` as two float64 MatMuls with banded averaging
  matrices built from the shape (``M[j, i] = 1 / count_i`` for rows ``j`` in the clipped window
  of ``i``), one per axis. Each output is a direct sum of the window's values (no prefix sums
  whose magnitude grows with the line, no Concat/Slice copies), clipping and the pixel counts
  are in the matrices, and the windows may be larger than the map;
* ``rstd`` in float32 after the float64 subtraction ``E[b] - E[a]**2``, and
  ``y = ((x - m) + (a - mean_a)) * rstd``, the second term formed in float64.

Float64 is kept for the window sums because ``E[x^2] - E[x]^2`` cancels: float32 is not enough
there on maps with offsets of 1e4 (``hard_maps``). Runtimes without float64 (TensorRT) would
need another variant, which is not provided. The band MatMuls cost ``2 (H + W)`` multiply-adds
per map element, against ~10 memory passes for prefix sums: cheaper at the feature-map sizes of
the deployment benchmarks (docs/deployment.md), dearer on maps of several hundred pixels a side.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = ['local_context_norm_onnx']


def _window_mean_matrix(length: int, lo: int, hi: int, device: torch.device) -> Tensor:
    """(L, L) float64 ``M`` with ``(t @ M)[i]`` the mean of ``t[j]``, ``j`` in the clipped
    ``[i - lo, i + hi]``: built from ``length`` at run time, so the size stays dynamic."""
    i = torch.arange(length, device=device)
    offset = i[:, None] - i[None, :]                      # j - i
    band = ((offset >= -lo) & (offset <= hi)).to(torch.float64)
    return band / band.sum(0, keepdim=True)


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
    resid = centred.mean(2, keepdim=True)                 # m's rounding (0 in float64)
    m64 = mean_px.double()
    a0 = m64 - mean_px.mean((3, 4), keepdim=True).double()   # m - c, exact in float64
    a = a0 + resid.double()
    # the group's second moment about c: v - resid^2 + a^2 = v + a0 * (a + resid)
    b = var_px.double() + a0 * (a + resid.double())
    rows = _window_mean_matrix(h, (kh - 1) // 2, kh // 2, x.device).transpose(0, 1)
    cols = _window_mean_matrix(w, (kw - 1) // 2, kw // 2, x.device)
    mean = rows @ (a @ cols)
    var = (rows @ (b @ cols) - mean * mean).to(cdt).clamp(min=0)
    rstd = torch.rsqrt(var + eps)
    y = (centred + (a0 - mean).to(cdt)) * rstd
    y = y.reshape(n, c, h, w)
    if weight is not None:
        y = y * weight.to(cdt).reshape(1, c, 1, 1)
    if bias is not None:
        y = y + bias.to(cdt).reshape(1, c, 1, 1)
    return y.to(x.dtype)
