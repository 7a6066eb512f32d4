"""LCN as one PyTorch operator: ``torch.ops.lcn_mm.local_context_norm`` and its backward.

Registered with ``torch.library.custom_op`` so that torch.compile (no graph break), torch.export
and AOTAutograd see one opaque operator with fake kernels (shapes only) and an autograd formula,
instead of Python branches around a ctypes call. The fused CPU kernels (``native.py``), the
Triton kernels (``gpu.py``) and the pure-PyTorch path (``local_context_norm.py``) are its
implementations; which one runs is decided inside the operator from the tensor it gets, the
same way in the real and in the fake kernels.

The forward operator returns ``(y, mu, rstd)``: the per-(n, g) maps a backend keeps for its
own backward pass (an empty tensor when it keeps none: the CPU kernels with ``save_state``
False, i.e. under ``torch.no_grad()``, ``inference_mode`` or for inputs that need no gradient,
or with groups of fewer than ``native.KEEP_STATS_MIN_CPG`` channels, which they recompute).
Double backward is not implemented and says so.

Plain eager calls (:func:`apply`) skip the dispatcher and run the same implementations through
an ``autograd.Function``: the per-call Python of ``custom_op`` (its wrappers, a second autograd
node, the backward operator's dispatch) costs a tenth of a forward+backward on an FPN P5 map
(docs/deployment.md). Whatever watches the dispatcher (torch.compile, torch.export,
fake or functional tensors, dispatch modes, functorch transforms, jit tracing) gets the
operator.

No ``from __future__ import annotations`` here: ``custom_op`` reads the annotations as types.
"""
import contextlib
from typing import Optional, Tuple

import torch
from torch import Tensor

from . import gpu, native
from .local_context_norm import (_compute_dtype, _eager_backward, _eager_forward, _needs_grad,
                                 window_reach)

__all__ = ['local_context_norm_op', 'local_context_norm_backward_op', 'apply']

Window = Tuple[int, int, int, int]


def _gpu_config(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], num_groups: int,
                window: Window) -> tuple:
    """The key under which a Triton compile/launch failure is remembered (``gpu.py``): the
    configurations that failed take the fallback, every other one keeps the kernels."""
    return (tuple(x.shape), x.dtype, num_groups, window,
            weight is not None and weight.dtype, bias is not None and bias.dtype)


def _backend(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], num_groups: int,
             window: Optional[Window], detach_stats: bool) -> str:
    """'gpu', 'native' or 'pure': the implementation for ``x`` (forward and backward agree,
    because the backward pass asks again with the same saved input and arguments).

    ``window=None`` (the fake kernels) ignores the Triton configurations that failed before:
    hashing a symbolic shape would specialize it, and their fallback (the pure path) returns
    state of the same shapes and dtypes as the Triton kernels."""
    if detach_stats:
        return 'pure'   # the kernels implement the true gradient only
    if gpu.supports(x) and (window is None or not gpu.failed_before(
            _gpu_config(x, weight, bias, num_groups, window))):
        return 'gpu'
    if native.supports(x.to(_compute_dtype(x))):
        return 'native'
    return 'pure'


def _state_shape(x: Tensor, backend: str, num_groups: int, save_state: bool
                 ) -> Tuple[Tuple[int, ...], torch.dtype, torch.dtype]:
    """Shape and dtypes (mu, rstd) of the state maps ``backend`` returns for ``x``: mu in
    float64 for every backend (rounding it would cost half an ulp of |mu| in every x - mu),
    rstd in float32 (Triton) or the compute dtype."""
    n, c, h, w = x.shape
    cdt = _compute_dtype(x)
    if backend == 'native' and not (save_state and c // num_groups >= native.KEEP_STATS_MIN_CPG):
        return (0,), torch.float64, cdt
    return (n, num_groups, h, w), torch.float64, torch.float32 if backend == 'gpu' else cdt


def _channels_last(x: Tensor) -> bool:
    return not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def _like(t: Tensor, x: Tensor) -> Tensor:
    """``t`` as the fake kernels promise it: ``x``'s dtype, ``torch.empty_like(x)``'s layout
    (the compiler checks the strides of what an opaque operator returns)."""
    t = t.to(x.dtype)
    if t.is_contiguous() and x.is_contiguous():  # the common case, without a meta tensor
        return t
    want = torch.empty_like(x, device='meta').stride()
    if all(a == b or size == 1 for a, b, size in zip(t.stride(), want, t.shape)):
        return t
    return torch.empty_like(x).copy_(t)


def _empty(x: Tensor, dtype: torch.dtype) -> Tensor:
    return x.new_empty((0,), dtype=dtype)


@torch.library.custom_op('lcn_mm::local_context_norm', mutates_args=())
def local_context_norm_op(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor],
                          num_groups: int, kh: int, kw: int, eps: float, detach_stats: bool,
                          save_state: bool) -> Tuple[Tensor, Tensor, Tensor]:
    """``(y, mu, rstd)`` of a contiguous or channels_last (N, C, H, W) tensor; the maps are
    backend-private state for the backward operator."""
    with torch.autocast(device_type=x.device.type, enabled=False):  # float32/64 statistics
        return _forward(x, weight, bias, num_groups, kh, kw, eps, detach_stats, save_state)


def _forward(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], num_groups: int,
             kh: int, kw: int, eps: float, detach_stats: bool, save_state: bool
             ) -> Tuple[Tensor, Tensor, Tensor]:
    n, c, h, w = x.shape
    window = window_reach(h, w, kh, kw)
    backend = _backend(x, weight, bias, num_groups, window, detach_stats)
    if backend == 'gpu':
        try:
            y, mu, rstd = gpu.forward(x.contiguous(), weight, bias, num_groups, window, eps)
            return _like(y, x), mu, rstd
        except torch.OutOfMemoryError:
            raise
        except Exception as err:  # a Triton compile/launch failure: one warning, then the
            # fallback for this configuration alone (the backward pass sees it too)
            gpu.report_failure(_gpu_config(x, weight, bias, num_groups, window), err)
            backend = _backend(x, weight, bias, num_groups, window, detach_stats)
    if backend == 'native':
        y, *state = native.forward(x.to(_compute_dtype(x)), weight, bias, num_groups, window,
                                   eps, save_state)
        mu, rstd = state if state else (_empty(x, torch.float64), _empty(x, y.dtype))
        return _like(y, x), mu, rstd
    y, mu_c, rstd = _eager_forward(x, weight, bias, num_groups, window, eps)
    if rstd.dtype == torch.float64:  # a view of the float64 statistics buffer then
        rstd = rstd.clone()
    return _like(y, x), mu_c.view(n, num_groups, h, w), rstd.view(n, num_groups, h, w)


@local_context_norm_op.register_fake
def _(x, weight, bias, num_groups, kh, kw, eps, detach_stats, save_state):
    backend = _backend(x, weight, bias, num_groups, None, detach_stats)
    shape, mu_dtype, rstd_dtype = _state_shape(x, backend, num_groups, save_state)
    return (torch.empty_like(x), x.new_empty(shape, dtype=mu_dtype),
            x.new_empty(shape, dtype=rstd_dtype))


@torch.library.custom_op('lcn_mm::local_context_norm_backward', mutates_args=())
def local_context_norm_backward_op(
        grad_out: Tensor, x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor],
        mu: Tensor, rstd: Tensor, num_groups: int, kh: int, kw: int, eps: float,
        detach_stats: bool, need_x: bool, need_w: bool, need_b: bool
) -> Tuple[Tensor, Tensor, Tensor]:
    """``(dx, dweight, dbias)``, each an empty tensor where not needed (``need_w`` and
    ``need_b`` only with a weight / bias), from the forward operator's input and state."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        return _backward_impl(grad_out, x, weight, bias, mu, rstd, num_groups, kh, kw, eps,
                              detach_stats, need_x, need_w, need_b)


def _backward_impl(grad_out: Tensor, x: Tensor, weight: Optional[Tensor],
                   bias: Optional[Tensor], mu: Tensor, rstd: Tensor, num_groups: int, kh: int,
                   kw: int, eps: float, detach_stats: bool, need_x: bool, need_w: bool,
                   need_b: bool) -> Tuple[Tensor, Tensor, Tensor]:
    n, c, h, w = x.shape
    window = window_reach(h, w, kh, kw)
    backend = _backend(x, weight, bias, num_groups, window, detach_stats)
    if backend == 'gpu':
        cl = _channels_last(x)
        dx, dw, db = gpu.backward(x.contiguous(), grad_out, weight, num_groups, window, eps,
                                  need_x, need_w, need_b, mu, rstd)
        if dx is not None and cl:
            dx = dx.contiguous(memory_format=torch.channels_last)
    elif backend == 'native':
        dx, dw, db = native.backward(x.to(_compute_dtype(x)), grad_out, weight, num_groups,
                                     window, eps, need_x, need_w, need_b,
                                     *((mu, rstd) if mu.numel() else ()))
    else:
        dx, dw, db = _eager_backward(x, grad_out, weight, mu.view(n, num_groups, 1, h, w),
                                     rstd.view(n, num_groups, 1, h, w), num_groups, window,
                                     detach_stats, need_x, need_w, need_b)
    return (_like(dx, x) if need_x else _empty(x, x.dtype),
            dw.to(weight.dtype) if need_w else _empty(x, x.dtype),
            db.to(bias.dtype) if need_b else _empty(x, x.dtype))


@local_context_norm_backward_op.register_fake
def _(grad_out, x, weight, bias, mu, rstd, num_groups, kh, kw, eps, detach_stats, need_x,
      need_w, need_b):
    return (torch.empty_like(x) if need_x else _empty(x, x.dtype),
            torch.empty_like(weight) if need_w else _empty(x, x.dtype),
            torch.empty_like(bias) if need_b else _empty(x, x.dtype))


def _setup_context(ctx, inputs, output) -> None:
    x, weight, bias, num_groups, kh, kw, eps, detach_stats, _ = inputs
    _, mu, rstd = output
    ctx.save_for_backward(x, weight, bias, mu, rstd)
    ctx.args = (num_groups, kh, kw, eps, detach_stats)
    ctx.mark_non_differentiable(mu, rstd)
    # No zero-filled gradients for the state maps (they cost as much as a small layer's
    # whole backward pass).
    ctx.set_materialize_grads(False)


def _backward(ctx, grad_y: Tensor, _grad_mu: Optional[Tensor], _grad_rstd: Optional[Tensor]):
    x, weight, bias, mu, rstd = ctx.saved_tensors
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    if grad_y is None:
        grad_y = torch.zeros_like(x)
    dx, dw, db = local_context_norm_backward_op(grad_y, x, weight, bias, mu, rstd, *ctx.args,
                                                need_x, need_w, need_b)
    return (dx if need_x else None, dw if need_w else None, db if need_b else None,
            None, None, None, None, None, None)


local_context_norm_op.register_autograd(_backward, setup_context=_setup_context)


def _no_double_backward(ctx, *grads):
    raise RuntimeError(
        'LCN (lcn_mm::local_context_norm) does not support double backward (second-order '
        'gradients, e.g. torch.autograd.grad(..., create_graph=True) followed by another '
        'backward); use GroupNorm for gradient penalties')


local_context_norm_backward_op.register_autograd(
    _no_double_backward, setup_context=lambda ctx, inputs, output: None)


def _autocast_off(x: Tensor):
    """The operator computes in float32/64 whatever the autocast state; entering an autocast
    context costs microseconds, so only when autocast is on."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.autocast(device_type=x.device.type, enabled=False)
    return contextlib.nullcontext()


class _Direct(torch.autograd.Function):
    """The operator's forward, saved state and backward without the dispatcher (eager only)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor],
                num_groups: int, kh: int, kw: int, eps: float, detach_stats: bool) -> Tensor:
        with _autocast_off(x):
            y, mu, rstd = _forward(x, weight, bias, num_groups, kh, kw, eps, detach_stats, True)
        ctx.save_for_backward(x, weight, bias, mu, rstd)
        ctx.args = (num_groups, kh, kw, eps, detach_stats)
        return y

    @staticmethod
    def backward(ctx, grad_y: Tensor):
        x, weight, bias, mu, rstd = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():  # create_graph=True: the operator's node raises the clear
            # double-backward error if its gradient is ever asked for
            grads = local_context_norm_backward_op(grad_y, x, weight, bias, mu, rstd,
                                                   *ctx.args, need_x, need_w, need_b)
        else:
            with _autocast_off(x):
                grads = _backward_impl(grad_y, x, weight, bias, mu, rstd, *ctx.args, need_x,
                                       need_w, need_b)
        return tuple(g if need else None for g, need in zip(grads, (need_x, need_w, need_b))
                     ) + (None,) * 5


_PLAIN = (Tensor, torch.nn.Parameter)


def _dispatcher_watched(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor]) -> bool:
    """Whether anything but plain eager execution sees this call, so that it must be the
    operator: tracing/compiling, a dispatch mode (FakeTensorMode, make_fx, FlopCounterMode),
    a tensor subclass (fake, functional, user __torch_dispatch__) or a functorch transform."""
    return (torch.compiler.is_compiling() or torch.jit.is_tracing()
            or torch._C._len_torch_dispatch_stack() > 0
            or torch._C._are_functorch_transforms_active()
            or type(x) is not Tensor
            or (weight is not None and type(weight) not in _PLAIN)
            or (bias is not None and type(bias) not in _PLAIN))


def apply(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], num_groups: int,
          kh: int, kw: int, eps: float, detach_stats: bool) -> Tensor:
    """``y`` of LCN for the public entry point: the operator where the dispatcher is watched,
    else the same implementations called directly (saving no state without gradients)."""
    save_state = _needs_grad(x, weight, bias)
    if _dispatcher_watched(x, weight, bias):
        return torch.ops.lcn_mm.local_context_norm(x, weight, bias, num_groups, kh, kw, eps,
                                                   detach_stats, save_state)[0]
    if save_state:
        return _Direct.apply(x, weight, bias, num_groups, kh, kw, eps, detach_stats)
    with _autocast_off(x):
        return _forward(x, weight, bias, num_groups, kh, kw, eps, detach_stats, False)[0]
