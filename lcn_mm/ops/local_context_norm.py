"""Local Context Normalization as a functional op (pure PyTorch, no OpenMMLab import).

Each element of ``x`` (N, C, H, W) is normalized with the mean and population variance of its
group of consecutive channels inside a kh x kw window centred on it (rows ``i-(kh-1)//2 ..
i+kh//2``, clipped at the borders so that only real pixels count).

How it is computed (see ``docs/lcn.md``):

1. Reduce over the channel group first: per pixel, the group mean ``m`` and the population
   variance ``v`` of its ``cpg`` channels (one read of ``x``, Welford inside ``var_mean``).
2. Shift ``m`` by a per-(n, g) constant ``c`` and box-filter the two per-pixel maps
   ``m - c`` and ``v + (m - c)**2`` with separable prefix sums in float64, restarted every
   block of ``max(k, 32)`` elements so that no sum grows with the map. The maps are ``cpg``
   times smaller than ``x``; prefix sums make the cost independent of the window, and float64
   after a shift avoids the cancellation of ``E[x**2] - E[x]**2`` that makes float32 integral
   images return negative variances.
3. ``xhat = (x - mu) * rstd`` (``m - mu`` formed in float64) and ``y = weight * xhat + bias``
   in the compute dtype.

The backward pass is again two box sums (with the window reflected), written in a custom
``autograd.Function`` that saves only ``xhat`` and two per-group maps.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import gpu, native

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


#: Prefix sums restart every ``max(window, _BLOCK)`` elements: a window then spans at most two
#: blocks, and no partial sum is larger than one block's, so the rounding error of a window
#: sum is ~u * block * max|value| (u = 2^-53) whatever the length of the line.
_BLOCK = 32


def _box_sum_1d(t: Tensor, dim: int, lo: int, hi: int) -> Tensor:
    """Clipped box sum over ``[i - lo, i + hi]`` along ``dim`` (-1 or -2), O(1) per element.

    The adjoint (for the backward pass) is the same sum with ``lo`` and ``hi`` swapped.

    Blocked prefix sums: ``t`` is zero-padded by ``lo + 1`` in front (so clipping is automatic)
    and cut into blocks of ``B >= k = lo + hi + 1`` elements, each with its own inclusive prefix
    sum ``P``. The window of output ``i`` is padded positions ``(i, i + k]``: ``P[i + k] - P[i]``
    plus the total of ``i``'s block when the window crosses into the next block. Whole-line
    prefix sums would instead subtract two numbers as large as the line's total.
    ``t`` is overwritten with the result. Assumes ``0 <= lo, hi <= L - 1`` (larger reaches
    select the same pixels).
    """
    length = t.shape[dim]
    if lo == 0 and hi == 0:
        return t
    if lo == length - 1 and hi == length - 1:
        # Every window is the whole axis: a plain (pairwise) sum, broadcast back.
        return t.sum(dim, keepdim=True).expand_as(t).contiguous()
    k = lo + hi + 1
    block = max(k, _BLOCK)
    n_blocks = -(-(length + k) // block)
    shape = list(t.shape)
    shape[dim] = n_blocks * block
    prefix = t.new_empty(shape)
    prefix.narrow(dim, 0, lo + 1).zero_()
    prefix.narrow(dim, lo + 1, length).copy_(t)
    prefix.narrow(dim, lo + 1 + length, shape[dim] - lo - 1 - length).zero_()
    blocked = prefix.unflatten(dim, (n_blocks, block))
    blocked.cumsum_(dim)  # within each block (the block index sits just before ``dim``)
    torch.sub(prefix.narrow(dim, k, length), prefix.narrow(dim, 0, length), out=t)
    # The last k positions of each block have windows that end in the next block: add the
    # block's total there (whole blocks, then the partial last one).
    totals = blocked.narrow(dim, block - 1, 1)
    full = length // block
    if full:
        t.narrow(dim, 0, full * block).unflatten(dim, (full, block)).narrow(
            dim, block - k, k).add_(totals.narrow(dim - 1, 0, full))
    rest = length - full * block
    if rest > block - k:
        t.narrow(dim, full * block + block - k, rest - block + k).add_(
            totals.select(dim - 1, full))
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


def _eager_forward(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], g: int,
                   window: Tuple[int, int, int, int], eps: float, keep_xhat: bool
                   ) -> Tuple[Tensor, Optional[Tensor], Tensor, Tensor]:
    """Pure-PyTorch forward: ``(y, xhat or None, mu - c, rstd)``.

    With ``keep_xhat=False`` (no backward will follow) ``y`` is computed in the ``xhat``
    buffer, which bounds the extra memory at about three times the input's size.
    """
    n, c, h, w = x.shape
    cpg = c // g
    cdt = _compute_dtype(x)
    xg = x.to(cdt).view(n, g, cpg, h, w)
    ones = xg.new_ones(1, g, 1, cpg)
    # 1. Per-pixel statistics of the channel group: mean, then the sum of squared deviations
    #    from it (no cancellation). ``xhat`` holds x - m until step 3.
    mean_px = _group_sum(xg, ones).div_(cpg)
    xhat = xg - mean_px
    y_out = None
    if keep_xhat:
        # Allocated in the input's shape: returning a view would break in-place ops that
        # follow (ReLU(inplace=True)) under autograd. Scratch for the squares until step 3.
        y_out = torch.empty_like(x, dtype=cdt)
        squares = torch.mul(xhat, xhat, out=y_out.view(n, g, cpg, h, w))
    else:
        squares = xhat * xhat
    sq_px = _group_sum(squares, ones) if cpg > 1 else None
    del squares
    # ``mean_px`` is the group mean rounded to cdt; the mean of ``x - mean_px`` is that rounding
    # (half an ulp of |m|, 5e-4 at 1e4 in float32), which would otherwise shift the window mean.
    resid = _group_sum(xhat, ones).div_(cpg) if cpg > 1 and cdt != torch.float64 else None
    # 2. Window statistics in float64 after a per-(n, g) shift (maps are cpg x smaller).
    #    Layout (2, N, G, 1, H, W) keeps each map contiguous.
    shift = mean_px.mean(dim=(-2, -1), keepdim=True, dtype=torch.float64)
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
    #    then the per-channel affine transform.
    torch.addcmul(centred_px.sub_(mu_c).to(cdt).mul_(rstd), xhat, rstd, out=xhat)
    y = y_out.view(n, g, cpg, h, w) if keep_xhat else xhat
    w5 = weight.to(cdt).view(1, g, cpg, 1, 1) if weight is not None else None
    b5 = bias.to(cdt).view(1, g, cpg, 1, 1) if bias is not None else None
    if w5 is not None and b5 is not None:
        torch.addcmul(b5, xhat, w5, out=y)
    elif w5 is not None:
        torch.mul(xhat, w5, out=y)
    elif b5 is not None:
        torch.add(xhat, b5, out=y)
    elif keep_xhat:
        y.copy_(xhat)
    if not keep_xhat:
        return xhat.reshape(n, c, h, w).to(x.dtype), None, mu_c, rstd
    return y_out.to(x.dtype), xhat, mu_c, rstd


class _LocalContextNorm(torch.autograd.Function):
    """LCN with its exact gradient (or the stop-gradient variant of the original code).

    Saves ``xhat`` (one full tensor, as GroupNorm saves ``x``) and two per-group maps: the
    window mean minus a per-(n, g) shift, and rstd.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor],
                num_groups: int, window: Tuple[int, int, int, int], eps: float,
                detach_stats: bool) -> Tensor:
        y, xhat, mu_c, rstd = _eager_forward(x, weight, bias, num_groups, window, eps, True)
        ctx.save_for_backward(xhat, mu_c, rstd, weight)
        ctx.num_groups, ctx.window, ctx.detach_stats = num_groups, window, detach_stats
        ctx.bias_dtype = bias.dtype if bias is not None else None
        return y

    @staticmethod
    @once_differentiable  # second derivatives would be silently wrong: refuse them
    def backward(ctx, grad_out: Tensor):
        xhat, mu_c, rstd, weight = ctx.saved_tensors
        g, window = ctx.num_groups, ctx.window
        n, _, cpg, h, w = xhat.shape
        cdt = xhat.dtype
        dy = grad_out.to(cdt).reshape(n, g, cpg, h, w)
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = grad_w = grad_b = None
        if need_b and ctx.bias_dtype is not None:
            grad_b = dy.sum(dim=(0, 3, 4)).reshape(-1).to(ctx.bias_dtype)
        stats_grad = need_x and not ctx.detach_stats
        if not (need_w or stats_grad):
            if need_x:
                grad_x = dy * rstd if weight is None else dy * weight.to(cdt).view(
                    1, g, cpg, 1, 1)
                if weight is not None:
                    grad_x.mul_(rstd)
            return _finish(grad_x, grad_out, None, grad_b)

        # ``buf`` holds dy * xhat first, then becomes grad_x.
        buf = torch.mul(dy, xhat)
        if need_w and weight is not None:
            grad_w = buf.sum(dim=(0, 3, 4)).reshape(-1).to(weight.dtype)
        if not need_x:
            return _finish(None, grad_out, grad_w, grad_b)
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
        return _finish(grad_x, grad_out, grad_w, grad_b)


class _KernelLocalContextNorm(torch.autograd.Function):
    """The same op through a fused-kernel backend: ``native`` (CPU, C++/OpenMP) or ``gpu``
    (CUDA, Triton).

    A backend's ``forward`` returns ``(y, *state)`` and its ``backward`` takes that state
    back: besides ``x``, the maps of the window mean (float64) and rstd, which the CPU kernels
    keep only for groups of ``native.KEEP_STATS_MIN_CPG``+ channels (smaller groups recompute
    them, so that the saved bytes stay within 1.5x GroupNorm's) and only when a backward pass
    can follow.
    """

    @staticmethod
    def forward(ctx, backend, x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor],
                num_groups: int, window: Tuple[int, int, int, int], eps: float,
                keep_state: bool) -> Tensor:
        y, *state = backend.forward(x, weight, bias, num_groups, window, eps, keep_state)
        ctx.save_for_backward(x, weight, *state)
        ctx.backend, ctx.num_groups, ctx.window, ctx.eps = backend, num_groups, window, eps
        ctx.bias_dtype = bias.dtype if bias is not None else None
        return y

    @staticmethod
    @once_differentiable  # second derivatives would be silently wrong: refuse them
    def backward(ctx, grad_out: Tensor):
        x, weight, *state = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[1:4]
        need_w, need_b = need_w and weight is not None, need_b and ctx.bias_dtype is not None
        dx, dw, db = ctx.backend.backward(x, grad_out, weight, ctx.num_groups, ctx.window,
                                          ctx.eps, need_x, need_w, need_b, *state)
        dw = dw.to(weight.dtype) if dw is not None else None
        db = db.to(ctx.bias_dtype) if db is not None else None
        return None, dx, dw, db, None, None, None, None


def _needs_grad(*tensors: Optional[Tensor]) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _gpu_lcn(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], num_groups: int,
             window: Tuple[int, int, int, int], eps: float) -> Optional[Tensor]:
    """LCN through the Triton kernels, in the input's memory format; None if they failed for
    this configuration (now or before: one warning, then the fallback for it alone)."""
    config = (tuple(x.shape), x.dtype, num_groups, window,
              weight is not None and weight.dtype, bias is not None and bias.dtype)
    if gpu.failed_before(config):
        return None
    channels_last = not x.is_contiguous() and x.is_contiguous(
        memory_format=torch.channels_last)
    try:
        y = _KernelLocalContextNorm.apply(gpu, x.contiguous(), weight, bias, num_groups,
                                          window, eps, True)
    except torch.OutOfMemoryError:
        raise
    except Exception as err:  # a Triton compile/launch failure
        gpu.report_failure(config, err)
        return None
    return y.contiguous(memory_format=torch.channels_last) if channels_last else y


def _finish(grad_x: Optional[Tensor], grad_out: Tensor, grad_w: Optional[Tensor],
            grad_b: Optional[Tensor]):
    if grad_x is not None:
        grad_x = grad_x.reshape(grad_out.shape).to(grad_out.dtype)
    return grad_x, grad_w, grad_b, None, None, None, None


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
    _, _, h, w = x.shape
    with torch.autocast(device_type=x.device.type, enabled=False):
        if x.shape[0] == 0:
            return _group_norm(x, num_groups, _like(weight, x), _like(bias, x), eps)
        # A window covering the whole map (kh >= 2H-1 and kw >= 2W-1) is GroupNorm, but it
        # runs through the same kernels as any other window rather than F.group_norm: same
        # arguments accepted (F.group_norm refuses mixed dtypes and groups of one value) and
        # the same accuracy (float32 GroupNorm loses ~1e-3 at a 1e4 offset).
        window = window_reach(h, w, kh, kw)
        if not (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)):
            x = x.contiguous()  # e.g. a strided slice: both paths need a group-splittable view
        if not detach_stats and gpu.supports(x):
            y = _gpu_lcn(x, weight, bias, num_groups, window, float(eps))
            if y is not None:
                return y
        compute = x.to(_compute_dtype(x))
        if not detach_stats and native.supports(compute):
            y = _KernelLocalContextNorm.apply(native, compute, weight, bias, num_groups,
                                              window, float(eps), _needs_grad(x, weight, bias))
            return y.to(x.dtype)
        if not _needs_grad(x, weight, bias):
            return _eager_forward(x, weight, bias, num_groups, window, float(eps), False)[0]
        return _LocalContextNorm.apply(x, weight, bias, num_groups, window, float(eps),
                                       bool(detach_stats))
