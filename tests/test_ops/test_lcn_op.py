"""The LCN op against a slow, obviously-correct float64 reference, plus numerics and shapes."""
from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from lcn_mm.ops import local_context_norm, native
from lcn_mm.ops.reference import adversarial_maps as _adversarial_maps
from lcn_mm.ops.reference import reference_lcn

DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])


@pytest.fixture(autouse=True, params=['native', 'reference'])
def path(request, monkeypatch):
    """Run every test through the fused CPU kernels and through the pure-PyTorch path."""
    if request.param == 'reference':
        monkeypatch.setattr(native, 'supports', lambda x: False)
    return request.param


def test_native_kernels_are_built_here(path):
    """CI and developer machines have a compiler: the fast path must really be in use."""
    if os.environ.get('LCN_MM_NATIVE') == '0':
        pytest.skip('fused kernels disabled by LCN_MM_NATIVE=0')
    assert native.library() is not None
    assert native.supports(torch.randn(1, 2, 3, 3)) == (path == 'native')
    assert not native.supports(torch.randn(1, 2, 3, 3).to(memory_format=torch.channels_last))


# (N, C, H, W, G, kh, kw): odd, even, rectangular, 1, larger than the map, cpg = 1 and C.
CASES = [
    (2, 8, 7, 9, 4, 3, 3),
    (1, 6, 5, 8, 3, 4, 2),
    (2, 4, 6, 6, 2, 1, 1),
    (1, 4, 5, 4, 1, 20, 3),
    (2, 6, 4, 5, 6, 2, 7),
    (1, 6, 6, 7, 2, 5, 100),
    (3, 3, 8, 3, 1, 6, 1),
    (1, 4, 9, 9, 2, 17, 17),   # exactly 2H-1: the GroupNorm path
    (2, 2, 1, 1, 1, 3, 3),     # 1x1 map
    (1, 4, 1, 7, 2, 1, 4),     # single row
]


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('case', CASES, ids=lambda c: 'x'.join(map(str, c)))
@pytest.mark.parametrize('affine', [True, False])
def test_forward_and_gradients_match_reference(case, affine, device):
    n, c, h, w, g, kh, kw = case
    gen = torch.Generator().manual_seed(sum(case))
    x = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64).to(device)
    x.requires_grad_(True)
    weight = bias = None
    inputs = [x]
    if affine:
        weight = torch.randn(c, generator=gen, dtype=torch.float64).to(device).requires_grad_()
        bias = torch.randn(c, generator=gen, dtype=torch.float64).to(device).requires_grad_()
        inputs += [weight, bias]
    y = local_context_norm(x, g, (kh, kw), weight, bias)
    y_ref = reference_lcn(x, g, kh, kw, weight, bias)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, y_ref, rtol=1e-9, atol=1e-9)
    gy = torch.randn(y.shape, generator=gen, dtype=torch.float64).to(device)
    grads = torch.autograd.grad(y, inputs, gy)
    grads_ref = torch.autograd.grad(y_ref, inputs, gy)
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got, want, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize('case', [(1, 4, 5, 6, 2, 3, 4), (2, 2, 4, 3, 1, 2, 9),
                                  (1, 3, 3, 5, 3, 1, 2)])
def test_gradcheck(case):
    n, c, h, w, g, kh, kw = case
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(c, generator=gen, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(c, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda *a: local_context_norm(a[0], g, (kh, kw), a[1], a[2]), (x, weight, bias))
    assert torch.autograd.gradgradcheck is not None  # second order is not promised


def test_detach_stats_reproduces_stop_gradient_and_differs_from_true_gradient():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 6, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, generator=gen, dtype=torch.float64, requires_grad=True)
    gy = torch.randn(2, 4, 6, 7, generator=gen, dtype=torch.float64)
    y = local_context_norm(x, 2, 3, weight, detach_stats=True)
    y_ref = reference_lcn(x, 2, 3, 3, weight, detach_stats=True)
    torch.testing.assert_close(y, y_ref)
    gx, gw = torch.autograd.grad(y, (x, weight), gy)
    gx_ref, gw_ref = torch.autograd.grad(y_ref, (x, weight), gy)
    torch.testing.assert_close(gx, gx_ref)
    torch.testing.assert_close(gw, gw_ref)
    (gx_true,) = torch.autograd.grad(local_context_norm(x, 2, 3, weight), x, gy)
    assert (gx_true - gx).abs().max() > 0.1 * gx_true.abs().max()


def test_detach_stats_with_global_window_is_not_groupnorm_gradient():
    x = torch.randn(1, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    gy = torch.randn(1, 4, 3, 3, dtype=torch.float64)
    (g_detached,) = torch.autograd.grad(local_context_norm(x, 2, 99, detach_stats=True), x, gy)
    (g_ref,) = torch.autograd.grad(reference_lcn(x, 2, 99, 99, detach_stats=True), x, gy)
    torch.testing.assert_close(g_detached, g_ref)


# --- Limits: GroupNorm, InstanceNorm, LayerNorm, Positional Normalization ---------------------

@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('shape,groups', [((2, 8, 5, 7), 4), ((1, 6, 1, 1), 3), ((3, 4, 2, 9), 2)])
def test_global_window_is_exactly_groupnorm(shape, groups, device):
    x = torch.randn(shape, device=device)
    weight, bias = torch.randn(shape[1], device=device), torch.randn(shape[1], device=device)
    h, w = shape[2:]
    want = F.group_norm(x, groups, weight, bias, 1e-5)
    for window in [(2 * h - 1, 2 * w - 1), 10_000]:
        assert torch.equal(local_context_norm(x, groups, window, weight, bias), want)


def test_windowed_path_agrees_with_groupnorm_when_window_covers_the_map():
    # Window reach just short of the dispatch threshold in one dimension only: one pixel
    # column sees a smaller window, all others see the whole map.
    x = torch.randn(2, 4, 6, 5, dtype=torch.float64)
    y = local_context_norm(x, 2, (11, 8))
    want = F.group_norm(x, 2, eps=1e-5)
    torch.testing.assert_close(y[..., :-1], want[..., :-1])
    torch.testing.assert_close(y, reference_lcn(x, 2, 11, 8))


def test_instance_norm_and_layer_norm_limits():
    x = torch.randn(2, 6, 5, 4, dtype=torch.float64)
    torch.testing.assert_close(local_context_norm(x, 6, 99), F.instance_norm(x, eps=1e-5))
    torch.testing.assert_close(local_context_norm(x, 1, 99),
                               F.layer_norm(x, x.shape[1:], eps=1e-5))


def test_positional_norm_limit():
    x = torch.randn(2, 6, 5, 4, dtype=torch.float64)
    mean = x.mean(1, keepdim=True)
    var = x.var(1, unbiased=False, keepdim=True)
    torch.testing.assert_close(local_context_norm(x, 1, 1), (x - mean) / torch.sqrt(var + 1e-5))


# --- float32 numerics ------------------------------------------------------------------------

@pytest.mark.parametrize('window', [31, (64, 63), 255])
def test_float32_is_accurate_on_adversarial_1024_maps(window):
    x = _adversarial_maps()
    y = local_context_norm(x, 4, window)
    want = local_context_norm(x.double(), 4, window)
    assert torch.isfinite(y).all()
    assert (y.double() - want).abs().max().item() <= 1e-3


def test_float32_gradients_are_accurate_on_adversarial_maps():
    x = _adversarial_maps(256)
    x64 = x.double().requires_grad_(True)
    x32 = x.clone().requires_grad_(True)
    gy = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    (g32,) = torch.autograd.grad(local_context_norm(x32, 2, 31), x32, gy.float())
    (g64,) = torch.autograd.grad(local_context_norm(x64, 2, 31), x64, gy)
    assert torch.isfinite(g32).all()
    assert (g32.double() - g64).abs().max() <= 1e-3 * g64.abs().max()


def test_constant_input_gives_zero_output_not_nan():
    x = torch.full((2, 4, 16, 16), 3.7e4)
    x.requires_grad_(True)
    y = local_context_norm(x, 2, 5)
    assert torch.equal(y, torch.zeros_like(y))
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


# --- dtypes, layouts, shapes -----------------------------------------------------------------

@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_inputs_use_float32_statistics_and_return_input_dtype(dtype, device):
    x = (torch.randn(2, 8, 12, 10, device=device) * 3 + 100).to(dtype).requires_grad_(True)
    weight = torch.randn(8, device=device, requires_grad=True)
    bias = torch.randn(8, device=device, requires_grad=True)
    y = local_context_norm(x, 4, 5, weight, bias)
    assert y.dtype == dtype
    want = local_context_norm(x.detach().float(), 4, 5, weight, bias)
    torch.testing.assert_close(y.float(), want, rtol=0, atol=0.05 if dtype == torch.bfloat16
                               else 0.01)
    y.float().sum().backward()
    assert x.grad.dtype == dtype and weight.grad.dtype == torch.float32
    assert torch.isfinite(x.grad.float()).all()


@pytest.mark.parametrize('window', [5, 1000])
def test_autocast_keeps_input_dtype_and_float32_statistics(window):
    x = torch.randn(2, 8, 12, 10) * 3 + 100
    weight, bias = torch.randn(8), torch.randn(8)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        y32 = local_context_norm(x, 4, window, weight, bias)
        y16 = local_context_norm(x.bfloat16(), 4, window, weight, bias)
    assert y32.dtype == torch.float32 and y16.dtype == torch.bfloat16
    torch.testing.assert_close(y32, local_context_norm(x, 4, window, weight, bias))


@pytest.mark.parametrize('device', DEVICES)
def test_channels_last(device):
    x = torch.randn(2, 8, 9, 11, dtype=torch.float64, device=device)
    xc = x.to(memory_format=torch.channels_last).requires_grad_(True)
    x = x.requires_grad_(True)
    gy = torch.randn_like(x)
    y, yc = local_context_norm(x, 2, (4, 5)), local_context_norm(xc, 2, (4, 5))
    torch.testing.assert_close(yc, y)
    torch.testing.assert_close(torch.autograd.grad(yc, xc, gy)[0],
                               torch.autograd.grad(y, x, gy)[0])


@pytest.mark.parametrize('fmt', [torch.contiguous_format, torch.channels_last])
def test_inference_output_equals_training_output(fmt):
    """Without autograd the PyTorch path computes in place; same numbers, same layout."""
    x = torch.randn(2, 8, 11, 13).to(memory_format=fmt)
    weight, bias = torch.randn(8), torch.randn(8)
    with torch.no_grad():
        y_inf = local_context_norm(x, 4, (3, 4), weight, bias)
    y_train = local_context_norm(x.clone().requires_grad_(True), 4, (3, 4), weight, bias)
    assert torch.equal(y_inf, y_train.detach())
    assert y_inf.is_contiguous(memory_format=fmt)


def test_non_contiguous_input():
    base = torch.randn(2, 16, 14, 22, dtype=torch.float64)
    x = base[:, ::2, 1::2, ::2].requires_grad_(True)   # strided view
    xc = x.detach().contiguous().requires_grad_(True)
    y, yc = local_context_norm(x, 4, 3), local_context_norm(xc, 4, 3)
    torch.testing.assert_close(y, yc)
    gy = torch.randn_like(yc)
    torch.testing.assert_close(torch.autograd.grad(y, x, gy)[0],
                               torch.autograd.grad(yc, xc, gy)[0])


def test_empty_batch():
    x = torch.randn(0, 8, 7, 7, requires_grad=True)
    weight = torch.ones(8, requires_grad=True)
    bias = torch.zeros(8, requires_grad=True)
    y = local_context_norm(x, 4, 3, weight, bias)
    assert y.shape == (0, 8, 7, 7)
    y.sum().backward()
    assert x.grad.shape == x.shape
    assert torch.equal(weight.grad, torch.zeros(8)) and torch.equal(bias.grad, torch.zeros(8))


def test_deterministic_bitwise():
    x = torch.randn(2, 16, 33, 40)
    a, b = local_context_norm(x, 4, 7), local_context_norm(x, 4, 7)
    assert torch.equal(a, b)


DATA_OPS = {'aten::cumsum_', 'aten::sub', 'aten::copy_', 'aten::bmm', 'aten::mul',
            'aten::addcmul', 'aten::addcmul_'}


def test_cost_does_not_depend_on_window_in_operation_count():
    """The number of ATen calls does not grow with the window (no loop over k)."""
    x = torch.randn(1, 4, 128, 128, requires_grad=True)
    torch.autograd.grad(local_context_norm(x, 2, 5).sum(), x)  # warm-up
    counts = []
    for k in (3, 31, 63):
        with torch.profiler.profile() as prof:
            local_context_norm(x, 2, k).sum().backward()
        counts.append({e.key: e.count for e in prof.key_averages() if e.key in DATA_OPS})
    assert counts[0] == counts[1] == counts[2]


# --- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize('kwargs,exc,match', [
    (dict(num_groups=3), ValueError, 'num_groups=3 must divide'),
    (dict(num_groups=0), ValueError, 'num_groups must be a positive int'),
    (dict(window_size=0), ValueError, 'window_size must be >= 1'),
    (dict(window_size=(3, -1)), ValueError, 'window_size must be >= 1'),
    (dict(window_size=2.5), TypeError, 'window_size must be an int'),
    (dict(window_size=(3, 3, 3)), TypeError, 'window_size must be an int'),
    (dict(window_size=True), TypeError, 'window_size must be an int'),
    (dict(eps=0.0), ValueError, 'eps must be > 0'),
    (dict(weight=torch.ones(4)), ValueError, r'weight must have shape \(8,\)'),
])
def test_bad_arguments(kwargs, exc, match):
    args = dict(num_groups=2, window_size=3)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        local_context_norm(torch.randn(1, 8, 4, 4), **args)


@pytest.mark.parametrize('shape', [(8, 4), (1, 8, 4), (1, 8, 4, 4, 4)])
def test_wrong_rank(shape):
    with pytest.raises(ValueError, match='expects a 4-D input'):
        local_context_norm(torch.randn(shape), 2, 3)


def test_integer_input_rejected():
    with pytest.raises(TypeError, match='floating-point'):
        local_context_norm(torch.ones(1, 2, 3, 3, dtype=torch.int64), 1, 3)
