"""Local Context Normalization as a functional op (pure PyTorch, no OpenMMLab import).

Each element of ``x`` (N, C, H, W) is normalized with the mean and population variance of its
group of consecutive channels inside a kh x kw window centred on it (rows ``i-(kh-1)//2 ..
i+kh//2``, clipped at the borders so that only real pixels count).

How it is computed (see ``docs/lcn.md``):

1. Reduce over the channel group first: per pixel, the group mean ``m`` and the population
   variance ``v`` of its ``cpg`` channels (one read of ``x``, Welford inside ``var_mean``).
2. Shift ``m`` by a per-(n, g) constant ``c`` and box-filter the two per-pixel maps
   ``m - c`` and ``v + (m - c)**2`` with separable running sums in float64, restarted from a
   direct window sum every ``max(2k, 64)`` outputs so that no sum grows with the map. The maps
   are ``cpg`` times smaller than ``x``; running sums make the cost independent of the
   window, and float64
   after a shift avoids the cancellation of ``E[x**2] - E[x]**2`` that makes float32 integral
   images return negative variances.
3. ``xhat = (x - mu) * rstd`` (``m - mu`` formed in float64) and ``y = weight * xhat + bias``
   in the compute dtype.

The backward pass is again two box sums (with the window reflected). This file is the
pure-PyTorch implementation and the public entry point; ``library.py`` makes it, the fused CPU
kernels and the Triton kernels implementations of one operator, ``lcn_mm::local_context_norm``,
which torch.compile and torch.export see through, and ``onnx.py`` is what ONNX export traces.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from .onnx import local_context_norm_onnx

WindowSize = Union[int, Sequence[int]]

__all__ = ['local_context_norm', 'normalize_window_size']


def normalize_window_size(window_size: WindowSize) -> Tuple[int, int]:
    """Return ``(kh, kw)`` from an int or a pair of ints, each >= 1, or raise."""
    if isinstance(window_size, bool):
        raise TypeError(
            f'window_size must be an int >= 1 or a pair (kh, kw) of ints >= 1, '
            f'got {window_size!r}')
    if isinstance(window_size, int):
        pair: Tuple = (window_size, window_size)
    elif isinstance(window_size, (tuple, list)) and len(window_size) == 2:
        pair = tuple(window_size)
    else:
        raise TypeError(
            f'window_size must be an int >= 1 or a pair (kh, kw) of ints >= 1, '
            f'got {window_size!r}')
    for k in pair:
        if isinstance(k, bool) or not isinstance(k, int):
            raise TypeError(
                f'window_size must be an int >= 1 or a pair (kh, kw) of ints >= 1, '
                f'got {window_size!r}')
        if k < 1:
            raise ValueError(
                f'window_size must be >= 1 in both dimensions, got {window_size!r}')
    return pair[0], pair[1]


def window_reach(h: int, w: int, kh: int, kw: int) -> Tuple[int, int, int, int]:
    """``(lo_h, hi_h, lo_w, hi_w)``: rows ``i - lo_h .. i + hi_h`` (and columns alike) of a
    centred kh x kw window, the reach clipped to the map (larger reaches select the same
    pixels)."""
    return (min((kh - 1) // 2, h - 1), min(kh // 2, h - 1),
            min((kw - 1) // 2, w - 1), min(kw // 2, w - 1))


def _check_args(x: Tensor, num_groups: int, weight: Optional[Tensor],
                bias: Optional[Tensor], eps: float) -> None:
    if x.dim() != 4:
        raise ValueError(
            f'local_context_norm expects a 4-D input (N, C, H, W), got shape {tuple(x.shape)}')
    if not x.is_floating_point():
        raise TypeError(f'local_context_norm expects a floating-point input, got {x.dtype}')
    channels = x.shape[1]
    if isinstance(num_groups, bool) or not isinstance(num_groups, int) or num_groups < 1:
        raise ValueError(f'num_groups must be a positive int, got {num_groups!r}')
    if channels % num_groups != 0:
        raise ValueError(
            f'num_groups={num_groups} must divide the number of channels {channels}')
    for name, p in (('weight', weight), ('bias', bias)):
        if p is not None and p.shape != (channels,):
            raise ValueError(
                f'{name} must have shape ({channels},) to match the input channels, '
                f'got {tuple(p.shape)}')
    if not eps > 0:
        raise ValueError(f'eps must be > 0, got {eps!r}')


def _window_counts(length: int, lo: int, hi: int, device: torch.device,
                   dtype: torch.dtype) -> Tensor:
    """Number of real pixels in the clipped window ``[i - lo, i + hi]`` for each i."""
    i = torch.arange(length, device=device)
    return ((i + hi).clamp(max=length - 1) - (i - lo).clamp(min=0) + 1).to(dtype)


#: Running window sums restart from a direct sum of their window every ``max(2k, _RESTART)``
#: outputs (the CPU kernel does the same): a running sum gains ~u*|window sum| of rounding
#: error per step (u = 2^-53), so its error does not grow with the line. Where the window is
#: exactly constant, (value entering - value leaving) is exactly 0, so the sum there is the
#: direct sum, not the difference of two large prefix sums, and its variance cancels to ~0.
_RESTART = 64


def _box_sum_1d(t: Tensor, dim: int, lo: int, hi: int) -> Tensor:
    """Clipped box sum over ``[i - lo, i + hi]`` along ``dim`` (-1 or -2), O(1) per element.

    The adjoint (for the backward pass) is the same sum with ``lo`` and ``hi`` swapped.

    Restarted running sums, vectorized: with ``t`` zero-padded by ``lo + 1`` in front and
    ``hi`` behind (so clipping is automatic; ``k = lo + hi + 1``), output ``i`` is the sum of
    padded positions ``(i, i + k]`` and moves by ``tp[i + k] - tp[i]`` from ``i - 1``. Each block
    of ``B = max(2k, _RESTART)`` outputs starts from its window's direct sum (an ``unfold``
    sum, ``k/B <= 1/2`` extra reads) followed by the differences, and one blocked ``cumsum``
    turns them into the window sums. ``t`` is overwritten with the result. Assumes
    ``0 <= lo, hi <= L - 1`` (larger reaches select the same pixels).
    """
    length = t.shape[dim]
    if lo == 0 and hi == 0:
        return t
    if lo == length - 1 and hi == length - 1:
        # Every window is the whole axis: a plain (pairwise) sum, broadcast back.
        return t.sum(dim, keepdim=True).expand_as(t).contiguous()
    k = lo + hi + 1
    block = max(2 * k, _RESTART)
    n_blocks = -(-length // block)
    shape = list(t.shape)
    shape[dim] = length + k
    padded = t.new_empty(shape)
    padded.narrow(dim, 0, lo + 1).zero_()
    padded.narrow(dim, lo + 1, length).copy_(t)
    padded.narrow(dim, lo + 1 + length, hi).zero_()
    # Direct sums of the windows of outputs 0, B, 2B, ...: padded positions (i0, i0 + k].
    starts = padded.narrow(dim, 1, length + k - 1).unfold(dim, k, block).sum(-1)
    torch.sub(padded.narrow(dim, k, length), padded.narrow(dim, 0, length), out=t)
    del padded
    full = length // block
    if full:
        whole = t.narrow(dim, 0, full * block).unflatten(dim, (full, block))
        whole.select(dim, 0).copy_(starts.narrow(dim, 0, full))
        whole.cumsum_(dim)
    if n_blocks > full:
        tail = t.narrow(dim, full * block, length - full * block)
        tail.select(dim, 0).copy_(starts.select(dim, full))
        tail.cumsum_(dim)
    return t


def _box_sum_maps(maps: Tensor, window: Tuple[int, int, int, int]) -> None:
    """In-place clipped box sums of each map ``maps[i]`` over the last two dims.

    One map and one axis at a time, so the only temporary is one map (the blocked prefix sums).
    """
    lo_h, hi_h, lo_w, hi_w = window
    for m in maps:
        for dim, lo, hi in ((-2, lo_h, hi_h), (-1, lo_w, hi_w)):
            out = _box_sum_1d(m, dim, lo, hi)
            if out is not m:
                m.copy_(out)


def _compute_dtype(x: Tensor) -> torch.dtype:
    """float64 stays float64; everything else is computed in float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _group_sum(t: Tensor, ones: Tensor) -> Tensor:
    """Sum over the channel axis (2) of a (N, G, cpg, H, W) tensor as a batched matmul.

    Much faster on CPU than a reduction over a strided middle axis, and keeps the result
    as a (N, G, 1, H, W) map.
    """
    n, g, cpg, h, w = t.shape
    return torch.matmul(ones, t.reshape(n, g, cpg, h * w)).view(n, g, 1, h, w)


def _counts(h: int, w: int, window: Tuple[int, int, int, int], device: torch.device) -> Tensor:
    lo_h, hi_h, lo_w, hi_w = window
    return (_window_counts(h, lo_h, hi_h, device, torch.float64)[:, None]
            * _window_counts(w, lo_w, hi_w, device, torch.float64)[None, :])


def _plane_shift(mean_px: Tensor) -> Tensor:
    """The per-(n, g) shift ``c`` (float64): the plane's mean of ``m`` rounded to 8 significant
    bits (bfloat16), so that ``m - c`` is exact in float64 and no longer than ``m`` itself.

    Then an exactly constant window of short values (integer nodata such as -9999 or 0) has
    exact window sums of ``m - c`` and ``(m - c)**2``, and its variance cancels to exactly 0
    instead of to ~u * (m - c)**2 of rounding noise, which ``rstd = (v + eps)**-0.5`` (and so
    the gradient ``w * dy * rstd`` there) would see at ``Δv / (2 eps)`` relative.
    """
    return mean_px.mean(dim=(-2, -1), keepdim=True, dtype=torch.float64).bfloat16().double()


def _eager_forward(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], g: int,
                   window: Tuple[int, int, int, int], eps: float
                   ) -> Tuple[Tensor, Tensor, Tensor]:
    """Pure-PyTorch forward: ``(y, mu - c, rstd)``, the maps (N, G, 1, H, W), ``mu - c`` in
    float64 and rstd in the compute dtype.

    ``y`` is computed in the ``xhat`` buffer, which bounds the extra memory at about three
    times the input's size; the backward pass recomputes ``xhat`` (:func:`_eager_xhat`).
    """
    n, c, h, w = x.shape
    cpg = c // g
    cdt = _compute_dtype(x)
    xg = x.to(cdt).view(n, g, cpg, h, w)
    ones = xg.new_ones(1, g, 1, cpg)
    # 1. Per-pixel statistics of the channel group: mean, then the sum of squared deviations
    #    from it (no cancellation). ``xhat`` holds x - m until step 3.
    mean_px = _group_sum(xg, ones).div_(cpg)
    # Allocated in the input's shape (not a view of a 5-D buffer), so that in-place ops that
    # follow (ReLU(inplace=True)) work under autograd.
    y = torch.empty_like(x, dtype=cdt)
    xhat = torch.sub(xg, mean_px, out=y.view(n, g, cpg, h, w))
    squares = xhat * xhat
    sq_px = _group_sum(squares, ones) if cpg > 1 else None
    del squares
    # ``mean_px`` is the group mean rounded to cdt; the mean of ``x - mean_px`` is that rounding
    # (half an ulp of |m|, 5e-4 at 1e4 in float32), which would otherwise shift the window mean.
    resid = _group_sum(xhat, ones).div_(cpg) if cpg > 1 and cdt != torch.float64 else None
    # 2. Window statistics in float64 after a per-(n, g) shift (maps are cpg x smaller).
    #    Layout (2, N, G, 1, H, W) keeps each map contiguous.
    shift = _plane_shift(mean_px)
    stats = mean_px.new_empty((2, n, g, 1, h, w), dtype=torch.float64)
    torch.sub(mean_px, shift, out=stats[0])
    centred_px = stats[0].clone()  # mean_px - c in float64 (the box sum overwrites ``stats``)
    if resid is not None:
        stats[0].add_(resid)  # the exact group mean m - c
    torch.mul(stats[0], stats[0], out=stats[1])
    if sq_px is not None:  # M2 / cpg = mean of (x - mean_px)^2 - resid^2
        stats[1].add_(sq_px, alpha=1.0 / cpg)
    if resid is not None:
        stats[1].addcmul_(resid, resid, value=-1)
    del mean_px, sq_px, resid
    _box_sum_maps(stats, window)
    stats.div_(_counts(h, w, window, x.device))
    mu_c = stats[0].clone()  # float64: in cdt, its rounding (half an ulp of |mu - c|) would
    # reach every output through x - mu
    var = stats[1].addcmul_(stats[0], stats[0], value=-1).clamp_(min=0)
    rstd = var.add_(eps).rsqrt_().to(cdt)
    del stats
    # 3. xhat = (x - mean_px + (mean_px - c) - (mu - c)) * rstd in one in-place pass
    #    (mean_px - mu is formed in float64 per pixel, so only the small result is rounded),
    #    then the per-channel affine transform, in place.
    _normalize(xhat, centred_px, mu_c, rstd)
    w5 = weight.to(cdt).view(1, g, cpg, 1, 1) if weight is not None else None
    b5 = bias.to(cdt).view(1, g, cpg, 1, 1) if bias is not None else None
    if w5 is not None and b5 is not None:
        torch.addcmul(b5, xhat, w5, out=xhat)
    elif w5 is not None:
        xhat.mul_(w5)
    elif b5 is not None:
        xhat.add_(b5)
    return y.to(x.dtype), mu_c, rstd


def _normalize(xhat: Tensor, centred_px: Tensor, mu_c: Tensor, rstd: Tensor) -> Tensor:
    """``xhat`` (holding x - mean_px) becomes ``(x - mean_px + (mean_px - mu)) * rstd`` in
    place; ``centred_px`` (mean_px - c, float64) is overwritten."""
    return torch.addcmul(centred_px.sub_(mu_c).to(xhat.dtype).mul_(rstd), xhat, rstd, out=xhat)


def _eager_xhat(x: Tensor, g: int, mu_c: Tensor, rstd: Tensor) -> Tensor:
    """``xhat`` of the pure-PyTorch forward recomputed from ``x`` and its (N, G, 1, H, W) maps,
    with the same operations (so the same rounding): the backward pass keeps ``x``, not a
    second full-size tensor."""
    n, c, h, w = x.shape
    cpg = c // g
    xg = x.to(_compute_dtype(x)).view(n, g, cpg, h, w)
    mean_px = _group_sum(xg, xg.new_ones(1, g, 1, cpg)).div_(cpg)
    shift = _plane_shift(mean_px)
    centred_px = torch.sub(mean_px, shift)  # float64, as in the forward pass
    return _normalize(xg - mean_px, centred_px, mu_c, rstd)


def _eager_backward(x: Tensor, grad_out: Tensor, weight: Optional[Tensor], mu_c: Tensor,
                    rstd: Tensor, g: int, window: Tuple[int, int, int, int],
                    detach_stats: bool, need_x: bool, need_w: bool, need_b: bool
                    ) -> Tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor]]:
    """Pure-PyTorch gradients ``(dx, dweight, dbias)`` in the compute dtype (or None) from the
    input and the (N, G, 1, H, W) maps of mu - c and rstd of :func:`_eager_forward`: the exact
    gradient, or the stop-gradient variant of the original code with ``detach_stats``."""
    n, c, h, w = x.shape
    cpg = c // g
    cdt = _compute_dtype(x)
    dy = grad_out.to(cdt).reshape(n, g, cpg, h, w)
    grad_x = grad_w = grad_b = None
    if need_b:
        grad_b = dy.sum(dim=(0, 3, 4)).reshape(-1)
    stats_grad = need_x and not detach_stats
    if not (need_w or stats_grad):
        if need_x:
            grad_x = dy * rstd if weight is None else dy * weight.to(cdt).view(
                1, g, cpg, 1, 1)
            if weight is not None:
                grad_x.mul_(rstd)
            grad_x = grad_x.reshape(n, c, h, w)
        return grad_x, None, grad_b

    xhat = _eager_xhat(x, g, mu_c, rstd)
    # ``buf`` holds dy * xhat first, then becomes grad_x.
    buf = torch.mul(dy, xhat)
    if need_w:
        grad_w = buf.sum(dim=(0, 3, 4)).reshape(-1)
    if not need_x:
        return None, grad_w, grad_b
    gamma = (weight.to(cdt).view(1, g, 1, cpg) if weight is not None
             else xhat.new_ones(1, g, 1, cpg))
    if stats_grad:
        # Per-pixel A = sum_c gamma*dy and B = sum_c gamma*dy*xhat, then the maps
        # beta = -r^2 B / n and alpha = -r A / n - (mu - c) beta and their box sums with
        # the window reflected (the adjoint of the clipped box sum).
        maps = xhat.new_empty((2, n, g, 1, h, w), dtype=torch.float64)
        alpha, beta = maps[0], maps[1]
        alpha.copy_(_group_sum(dy, gamma))
        beta.copy_(_group_sum(buf, gamma))
        r, m = rstd.double(), mu_c.double()
        count = _counts(h, w, window, dy.device).mul_(cpg)
        beta.mul_(r * r).div_(count).neg_()
        alpha.mul_(r).div_(count).neg_().sub_(m * beta)
        lo_h, hi_h, lo_w, hi_w = window
        _box_sum_maps(maps, (hi_h, lo_h, hi_w, lo_w))
        box_alpha, box_beta = alpha, beta
    grad_x = torch.mul(dy, gamma.view(1, g, cpg, 1, 1), out=buf).mul_(rstd)
    if stats_grad:
        # dx = gamma*dy*r + W'alpha + (x - c) W'beta, with x - c = xhat / r + (mu - c).
        grad_x.addcmul_(xhat, (box_beta / r).to(cdt))
        grad_x.add_((box_alpha + m * box_beta).to(cdt))
    return grad_x.reshape(n, c, h, w), grad_w, grad_b


def _needs_grad(*tensors: Optional[Tensor]) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _group_norm(x: Tensor, num_groups: int, weight: Optional[Tensor], bias: Optional[Tensor],
                eps: float) -> Tensor:
    """``F.group_norm`` on a contiguous tensor, keeping the input's memory format.

    PyTorch's channels_last CPU GroupNorm loses the variance of inputs whose mean is far from
    zero (|mean|/std ~ 1e4); the contiguous kernel does not.
    """
    if x.is_contiguous() or x.numel() == 0:
        return F.group_norm(x, num_groups, weight, bias, eps)
    fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) \
        else torch.contiguous_format
    return F.group_norm(x.contiguous(), num_groups, weight, bias, eps).contiguous(
        memory_format=fmt)


def _like(p: Optional[Tensor], x: Tensor) -> Optional[Tensor]:
    return None if p is None else p.to(x.dtype)


def local_context_norm(x: Tensor, num_groups: int, window_size: WindowSize,
                       weight: Optional[Tensor] = None, bias: Optional[Tensor] = None,
                       eps: float = 1e-5, detach_stats: bool = False) -> Tensor:
    """Local Context Normalization of a (N, C, H, W) tensor.

    Args:
        x: input of shape (N, C, H, W), any floating dtype; float64 is computed in float64,
            everything else in float32 (also under autocast), and the result has ``x.dtype``.
        num_groups: number of groups of consecutive channels; must divide C.
        window_size: ``k`` or ``(kh, kw)``, each >= 1; even sizes and sizes larger than the
            map are allowed (the window is clipped to real pixels). The window of pixel
            ``(i, j)`` is rows ``i - (kh-1)//2 .. i + kh//2`` (columns likewise), so every
            window is the whole map, and LCN equals GroupNorm, exactly when
            ``kh >= 2H - 1`` and ``kw >= 2W - 1``. For ``H <= kh < 2H - 1`` border pixels
            still see part of the map only, so LCN is not GroupNorm there (the authors' code
            switches to GroupNorm already at ``k >= H``; this op does not).
        weight, bias: optional per-channel affine parameters of shape (C,).
        eps: added to the variance, > 0.
        detach_stats: if True, no gradient flows through the window mean and variance
            (the behaviour of the authors' code, kept for comparison only).
    """
    _check_args(x, num_groups, weight, bias, eps)
    kh, kw = normalize_window_size(window_size)
    if torch.onnx.is_in_onnx_export():
        # Standard ONNX ops only, no branch on the (dynamic) shape.
        return local_context_norm_onnx(x, num_groups, kh, kw, weight, bias, float(eps))
    # A window covering the whole map (kh >= 2H-1 and kw >= 2W-1) is GroupNorm, but it runs
    # through the operator like any other window rather than F.group_norm: same arguments
    # accepted (F.group_norm refuses mixed dtypes and groups of one value) and the same
    # accuracy (float32 GroupNorm loses ~1e-3 at a 1e4 offset). The empty-batch shortcut
    # branches on the shape: under torch.compile / torch.export it would turn the dynamic
    # batch size into a guard, so traced graphs always call the operator.
    if not torch.compiler.is_compiling() and x.shape[0] == 0:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return _group_norm(x, num_groups, _like(weight, x), _like(bias, x), eps)
    if not (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)):
        x = x.contiguous()  # e.g. a strided slice: every path needs a group-splittable view
    from . import library  # imports this module (the implementations): not at the top
    return library.apply(x, weight, bias, num_groups, kh, kw, float(eps), bool(detach_stats))
