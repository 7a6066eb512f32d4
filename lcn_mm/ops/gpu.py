"""The Triton kernels of ``triton_kernels.py``: dispatch and launches (CUDA tensors).

Triton ships with PyTorch's CUDA wheels, so there is nothing to build at install time; kernels
are compiled on first use and cached by Triton. Without Triton (or with ``LCN_MM_TRITON=0``)
LCN runs the pure-PyTorch implementation on the GPU; a kernel that fails to compile or launch
for some configuration is reported by one warning that says why, and that configuration
(not every other one) takes the same fallback from then on. The launch functions also take
CPU tensors so that the tests can run the kernels under Triton's interpreter
(``TRITON_INTERPRET=1``) without a GPU.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from typing import Hashable, Optional, Set, Tuple

import torch
from torch import Tensor

_kernels = None
_failed = False
_failed_configs: Set[Hashable] = set()
_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
#: CUDA's limit on the number of blocks along grid dimension x (y and z allow only 65535).
MAX_GRID_X = 2 ** 31 - 1
#: Outputs between restarts of the box passes' running sums (at least; see ``_box``): their
#: rounding error then does not grow with the length of a line.
RESTART = 128


def kernels():
    """The kernel module, imported on first use; None if Triton is unavailable."""
    global _kernels, _failed
    if _failed:
        return None
    if _kernels is None:
        if os.environ.get('LCN_MM_TRITON', '1') == '0':
            _failed = True
            return None
        try:
            from . import triton_kernels
            _kernels = triton_kernels
        except ImportError:
            _failed = True
    return _kernels


def failed_before(config: Hashable) -> bool:
    """Whether the kernels already failed for this configuration (then they are not retried:
    a compile failure would recur, at a compile's cost, on every call)."""
    return config in _failed_configs


def report_failure(config: Hashable, err: Exception) -> None:
    """Record a compile/launch failure for one configuration, with one warning saying why."""
    _failed_configs.add(config)
    warnings.warn(f'lcn_mm: the Triton LCN kernels failed for {config} '
                  f'({type(err).__name__}: {err}); this configuration uses the pure-PyTorch '
                  'implementation, which is slower', RuntimeWarning)


def supports(x: Tensor) -> bool:
    """Whether the kernels take ``x``: a CUDA float32/float16/bfloat16 tensor, Triton present."""
    return x.is_cuda and x.dtype in _DTYPES and x.numel() > 0 and kernels() is not None


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _block(hw: int) -> int:
    return min(1024, max(16, 1 << (hw - 1).bit_length()))


def _device(x: Tensor):
    return torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()


def _box(src: Tensor, dst: Optional[Tensor], outs: Tuple[Optional[Tensor], ...], mode: int,
         axis: str, lo: int, hi: int, other: Tuple[int, int, int], cpg: int,
         eps: float) -> None:
    """One separable box pass over both maps of every plane of ``src`` (NG, 2, H, W)."""
    ng, _, h, w = src.shape
    if axis == 'w':   # lines are rows
        length, lines_per_plane, line_stride, elem_stride, blines, bl = w, h, w, 1, 16, 128
    else:             # lines are columns
        length, lines_per_plane, line_stride, elem_stride, blines, bl = h, w, 1, w, 64, 32
    n_lines = ng * lines_per_plane
    mu, r, out0, out1 = outs
    # Running sums restart every max(RESTART, 2k) outputs (CPU kernel: the same), rounded up
    # to whole chunks of ``bl``; a window longer than the line is clipped to it.
    k_win = min(lo, length - 1) + min(hi, length - 1) + 1
    seg = _cdiv(max(RESTART, 2 * k_win), bl) * bl
    k = kernels()
    k._box_kernel[(_cdiv(n_lines, blines),)](
        src, dst if dst is not None else src, mu if mu is not None else src,
        r if r is not None else src, out0 if out0 is not None else src,
        out1 if out1 is not None else src,
        length, n_lines, lines_per_plane, h * w, line_stride, elem_stride, lo, hi, seg,
        *other, cpg, eps, MODE=mode, BLINES=blines, BL=bl)


def launch_grid(n: int, num_groups: int, h: int, w: int) -> Tuple[Tuple[int], int, int]:
    """``(grid, block, blocks_per_plane)`` of the kernels over pixels: a 1-D grid of one
    program per ``block`` pixels of each (n, g) plane (a 2-D grid would put the blocks of a
    plane on dimension y, limited to 65535: an 8192 x 8192 map has 65536)."""
    hw = h * w
    block = _block(hw)
    per_plane = _cdiv(hw, block)
    programs = n * num_groups * per_plane
    if programs > MAX_GRID_X:
        raise ValueError(f'{programs} blocks of {block} pixels exceed the CUDA grid limit')
    return (programs,), block, per_plane


def _common(x: Tensor, num_groups: int):
    n, c, h, w = x.shape
    cpg = c // num_groups
    grid, block, per_plane = launch_grid(n, num_groups, h, w)
    meta = dict(CPG_P2=max(1, 1 << (cpg - 1).bit_length()), BLOCK=block)
    return n, c, h, w, cpg, h * w, grid, per_plane, meta


def forward(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], num_groups: int,
            window: Tuple[int, int, int, int], eps: float, keep_state: bool = True
            ) -> Tuple[Tensor, Tensor, Tensor]:
    """``(y, mu - k, rstd)`` of a contiguous (N, C, H, W) tensor; the maps are (N, G, H, W),
    float64 for mu - k and float32 for rstd, and ``k`` is the per-group shift that the
    backward pass recomputes. The maps are computed in any case, so ``keep_state`` changes
    nothing here."""
    n, c, h, w, cpg, hw, grid, nblk, meta = _common(x, num_groups)
    lo_h, hi_h, lo_w, hi_w = window
    k = kernels()
    sums = x.new_empty((n * num_groups, 2, h, w), dtype=torch.float64)
    boxed = torch.empty_like(sums)
    mu = x.new_empty((n, num_groups, h, w), dtype=torch.float64)
    rstd = x.new_empty((n, num_groups, h, w), dtype=torch.float32)
    y = torch.empty_like(x)
    wt = None if weight is None else weight.detach().float().contiguous()
    bs = None if bias is None else bias.detach().float().contiguous()
    with _device(x):
        k._pixel_sums_kernel[grid](x, sums, c, hw, num_groups, cpg, nblk, **meta)
        _box(sums, boxed, (None,) * 4, 0, 'w', lo_w, hi_w, (1, 0, 0), cpg, eps)
        _box(boxed, None, (None, None, mu, rstd), 1, 'h', lo_h, hi_h, (w, lo_w, hi_w), cpg,
             eps)
        k._normalize_kernel[grid](x, y, wt if wt is not None else mu,
                                  bs if bs is not None else mu, mu, rstd, c, hw, num_groups,
                                  cpg, nblk, HAS_W=wt is not None, HAS_B=bs is not None,
                                  **meta)
    return y, mu, rstd


def backward(x: Tensor, grad_out: Tensor, weight: Optional[Tensor], num_groups: int,
             window: Tuple[int, int, int, int], eps: float, need_x: bool, need_w: bool,
             need_b: bool, mu: Tensor, rstd: Tensor
             ) -> Tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor]]:
    """Gradients for x, weight and bias from the saved input and the (mu - k, rstd) maps
    of ``forward`` (``eps`` is already in rstd)."""
    n, c, h, w, cpg, hw, grid, nblk, meta = _common(x, num_groups)
    lo_h, hi_h, lo_w, hi_w = window
    k = kernels()
    dy = grad_out.contiguous()
    wt = None if weight is None else weight.detach().float().contiguous()
    parts = n * nblk
    pw = x.new_empty((parts, c), dtype=torch.float32) if need_w else None
    pb = x.new_empty((parts, c), dtype=torch.float32) if need_b else None
    maps = x.new_empty((n * num_groups, 2, h, w), dtype=torch.float64) if need_x else None
    dummy = rstd
    with _device(x):
        k._backward_sums_kernel[grid](
            x, dy, wt if wt is not None else dummy, mu, rstd,
            maps if maps is not None else dummy, pw if pw is not None else dummy,
            pb if pb is not None else dummy, c, hw, num_groups, cpg, h, w, *window, nblk,
            HAS_W=wt is not None, NEED_MAPS=need_x, NEED_W=need_w, NEED_B=need_b, **meta)
        dx = None
        if need_x:
            boxed = torch.empty_like(maps)
            p, q = torch.empty_like(rstd), torch.empty_like(rstd)
            # The adjoint of a clipped box sum is the box sum with the window reflected.
            _box(maps, boxed, (None,) * 4, 0, 'w', hi_w, lo_w, (1, 0, 0), cpg, 0.0)
            _box(boxed, None, (mu, rstd, p, q), 2, 'h', hi_h, lo_h, (1, 0, 0), cpg, 0.0)
            dx = torch.empty_like(x, dtype=grad_out.dtype)
            k._backward_dx_kernel[grid](x, dy, wt if wt is not None else dummy, mu, rstd, p, q,
                                        dx, c, hw, num_groups, cpg, nblk,
                                        HAS_W=wt is not None, **meta)
    return dx, (pw.sum(0) if need_w else None), (pb.sum(0) if need_b else None)
