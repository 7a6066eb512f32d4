"""The LCN op against an independent, slow, obviously-correct float64 oracle (tests/oracle.py),
plus numerics and shapes."""
from __future__ import annotations

import os

import pytest
import torch

from lcn_mm.ops import local_context_norm, native
from oracle import group_norm_formula, hard_maps, oracle_lcn

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
    (1, 4, 9, 9, 2, 17, 17),   # exactly 2H-1: every window is the whole map
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
    y_ref = oracle_lcn(x, g, kh, kw, weight, bias)
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


def test_second_derivatives_are_refused_not_wrong():
    """The backward passes are not themselves differentiable (fused kernels, saved normalized
    values): asking for a second derivative must raise, not return a silently wrong one."""
    x = torch.randn(1, 4, 5, 6, dtype=torch.float64, requires_grad=True)
    (gx,) = torch.autograd.grad(local_context_norm(x, 2, 3).pow(2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match='LCN .* does not support double backward'):
        gx.sum().backward()


def test_detach_stats_reproduces_stop_gradient_and_differs_from_true_gradient():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 6, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, generator=gen, dtype=torch.float64, requires_grad=True)
    gy = torch.randn(2, 4, 6, 7, generator=gen, dtype=torch.float64)
    y = local_context_norm(x, 2, 3, weight, detach_stats=True)
    y_ref = oracle_lcn(x, 2, 3, 3, weight, detach_stats=True)
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
    (g_ref,) = torch.autograd.grad(oracle_lcn(x, 2, 99, 99, detach_stats=True), x, gy)
    torch.testing.assert_close(g_detached, g_ref)


# --- Limits: GroupNorm, InstanceNorm, LayerNorm, Positional Normalization ---------------------

@pytest.mark.parametrize('shape,groups', [((2, 8, 5, 7), 4), ((1, 6, 1, 1), 3), ((3, 4, 2, 9), 2)])
def test_global_window_is_groupnorm(shape, groups):
    """From kh >= 2H-1 and kw >= 2W-1 every window is the whole map: GroupNorm, checked
    against GroupNorm written out (not F.group_norm) and the oracle."""
    x = torch.randn(shape, dtype=torch.float64)
    weight = torch.randn(shape[1], dtype=torch.float64)
    bias = torch.randn(shape[1], dtype=torch.float64)
    h, w = shape[2:]
    want = group_norm_formula(x, groups) * weight.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)
    for window in [(2 * h - 1, 2 * w - 1), 10_000]:
        torch.testing.assert_close(local_context_norm(x, groups, window, weight, bias), want,
                                   rtol=1e-10, atol=1e-10)


def test_groupnorm_only_from_2h_minus_1_not_from_h():
    """The boundary of the contract: at k = 2H-1 LCN is GroupNorm; at 2H-2 (and at H, where the
    authors' code switches to GroupNorm) a border pixel's window misses a row of the map, and
    LCN differs from GroupNorm there while still matching the oracle."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(1, 4, 6, 5, generator=gen, dtype=torch.float64)
    gn = group_norm_formula(x, 2)
    torch.testing.assert_close(local_context_norm(x, 2, (11, 9)), gn, rtol=1e-10, atol=1e-10)
    for window in [(10, 9), (11, 8), (6, 5)]:  # 2H-2 rows, 2W-2 columns, the authors' H x W
        y = local_context_norm(x, 2, window)
        torch.testing.assert_close(y, oracle_lcn(x, 2, *window), rtol=1e-10, atol=1e-10)
        assert (y - gn).abs().max() > 1e-3, window
    # 2H-2: only the last row (window rows i-5 .. i+4) misses the first row.
    y = local_context_norm(x, 2, (10, 9))
    torch.testing.assert_close(y[..., :-1, :], gn[..., :-1, :], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('dtype', [torch.float16, torch.float64])
@pytest.mark.parametrize('window', [3, 99])
def test_parameters_of_another_dtype_work_with_any_window(dtype, window):
    """float32 input with float16/float64 weight and bias: local and global windows alike."""
    x = torch.randn(2, 4, 5, 6)
    weight, bias = torch.randn(4, dtype=dtype), torch.randn(4, dtype=dtype)
    y = local_context_norm(x, 2, window, weight, bias)
    assert y.dtype == torch.float32
    want = oracle_lcn(x, 2, window, window, weight.double(), bias.double())
    torch.testing.assert_close(y.double(), want, rtol=0, atol=2e-5)


def test_global_window_is_as_accurate_as_local_windows_at_large_offsets():
    """float32 at a +1e4 offset: the global window is computed like any window (no float32
    GroupNorm, which loses ~1e-3 here), so it meets the same bound as the windowed kernel."""
    gen = torch.Generator().manual_seed(6)
    x = (1e4 + torch.randn(1, 4, 64, 64, generator=gen, dtype=torch.float64)).float()
    want = group_norm_formula(x, 2)
    for window in [127, 126]:  # 2H-1 (global) and 2H-2 (windowed)
        err = (local_context_norm(x, 2, window).double() - oracle_lcn(x, 2, window)).abs().max()
        assert err <= 1e-5, (window, err)
    err = (local_context_norm(x, 2, 127).double() - want).abs().max()
    assert err <= 1e-5, err


def test_instance_norm_and_layer_norm_limits():
    """Global window with one channel per group is InstanceNorm, with one group LayerNorm over
    (C, H, W): both written out as two-pass formulas."""
    x = torch.randn(2, 6, 5, 4, dtype=torch.float64)
    mean = x.mean((2, 3), keepdim=True)
    inorm = (x - mean) / torch.sqrt(((x - mean) ** 2).mean((2, 3), keepdim=True) + 1e-5)
    torch.testing.assert_close(local_context_norm(x, 6, 99), inorm, rtol=1e-10, atol=1e-10)
    mean = x.mean((1, 2, 3), keepdim=True)
    lnorm = (x - mean) / torch.sqrt(((x - mean) ** 2).mean((1, 2, 3), keepdim=True) + 1e-5)
    torch.testing.assert_close(local_context_norm(x, 1, 99), lnorm, rtol=1e-10, atol=1e-10)


def test_positional_norm_limit():
    x = torch.randn(2, 6, 5, 4, dtype=torch.float64)
    mean = x.mean(1, keepdim=True)
    var = x.var(1, unbiased=False, keepdim=True)
    torch.testing.assert_close(local_context_norm(x, 1, 1), (x - mean) / torch.sqrt(var + 1e-5))


# --- float32 numerics ------------------------------------------------------------------------

#: The float32 bound of docs/lcn.md (max abs error of the normalized output against the exact
#: float64 oracle) for inputs whose local conditioning allows it.
BOUND = 1e-3


@pytest.mark.parametrize('window', [3, 7, 31])
def test_float32_is_accurate_on_hard_inputs(window):
    """Offsets, steps of 1e4, nodata blocks, ramps, outliers (tests/oracle.py hard_maps)."""
    for name, x in hard_maps(256).items():
        err = (local_context_norm(x, 1, window).double() - oracle_lcn(x, 1, window)).abs().max()
        assert err <= BOUND, (name, err.item())


@pytest.mark.parametrize('shape', [(2, 4096), (4096, 2), (1024, 1024)])
def test_float32_accuracy_does_not_degrade_on_long_lines(shape):
    """Rounding must not grow with the length of a row or column (maps up to 4096 wide/high):
    steps of 1e4 and nodata blocks on long thin maps and a 1024^2 map, window 7."""
    h, w = shape
    gen = torch.Generator().manual_seed(7)
    noise = 0.1 * torch.randn(1, 2, h, w, generator=gen, dtype=torch.float64)
    i, j = torch.arange(h)[:, None], torch.arange(w)[None, :]
    maps = {'step': torch.where((i + j) % 512 < 256, 0.0, 1e4) + noise,
            'nodata': torch.where((i < h // 2) & (j < w // 2), -9999.0, 0.0) + 10 * noise}
    for name, x in maps.items():
        x = x.float()
        err = (local_context_norm(x, 1, 7).double() - oracle_lcn(x, 1, 7)).abs().max()
        assert err <= BOUND, (name, err.item())


def test_float32_gradients_are_accurate_on_hard_inputs():
    """Input gradient within 1e-3 of its max against the oracle, window 7, also on the maps with
    exactly constant windows beside data ~1e4 away (nodata, flat, step_flat): there the
    gradient is ``w * dy * rstd`` with ``rstd = (v + eps)**-0.5``, so rounding noise left in the
    window variance ``v`` (exactly 0) shows at ``Δv / (2 eps)`` relative (the pure path had
    6.5e-3 before its shift was made short and its box sums restarted running sums)."""
    gen = torch.Generator().manual_seed(3)
    for name, x in hard_maps(64).items():
        x64 = x.double().requires_grad_(True)
        x32 = x.clone().requires_grad_(True)
        gy = torch.randn(x.shape, generator=gen, dtype=torch.float64)
        (g32,) = torch.autograd.grad(local_context_norm(x32, 1, 7), x32, gy.float())
        (g64,) = torch.autograd.grad(oracle_lcn(x64, 1, 7), x64, gy)
        rel = ((g32.double() - g64).abs().max() / g64.abs().max()).item()
        assert rel <= 1e-3, (name, rel)


@pytest.mark.parametrize('value', [-9999.1234, 12345.678])
@pytest.mark.parametrize('window', [3, 7, 15])
def test_float32_gradient_in_constant_windows_of_non_integer_nodata(value, window, path):
    """The nodata map of tests/oracle.py with a nodata value that is not an integer: its
    constant windows still get the gradient within 1e-3 of its max."""
    x = hard_maps(64)['nodata']
    x = torch.where(x == -9999.0, torch.tensor(value), x)
    gen = torch.Generator().manual_seed(window)
    gy = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    x32, x64 = x.clone().requires_grad_(True), x.double().requires_grad_(True)
    (g32,) = torch.autograd.grad(local_context_norm(x32, 1, window), x32, gy.float())
    (g64,) = torch.autograd.grad(oracle_lcn(x64, 1, window), x64, gy)
    rel = ((g32.double() - g64).abs().max() / g64.abs().max()).item()
    assert rel <= 1e-3, rel


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


def _elements_processed(k: int) -> int:
    """Elements written by the pure path's ATen ops for one forward+backward (a work proxy)."""
    x = torch.randn(1, 4, 256, 256, requires_grad=True)
    with torch.profiler.profile(record_shapes=True) as prof:
        local_context_norm(x, 2, k).sum().backward()
    total = 0
    for e in prof.key_averages(group_by_input_shape=True):
        for shape in e.input_shapes[:1]:
            if shape:
                numel = 1
                for d in shape:
                    numel *= d
                total += numel * e.count
    return total


def _cpu_seconds(k: int) -> float:
    """Least thread CPU time of forward+backward over 5 runs (CPU time, not wall time, so that
    other processes on the machine matter less)."""
    import time
    x = torch.randn(1, 16, 192, 192, requires_grad=True)
    best = float('inf')
    for _ in range(6):
        t0 = time.thread_time()
        local_context_norm(x, 4, k).sum().backward()
        best = min(best, time.thread_time() - t0)
    return best


def test_cost_does_not_depend_on_window(path):
    """O(1) work per pixel whatever the window. Pure path: the elements its ATen ops touch grow
    only by the padding of each line to whole blocks (a loop over the window would multiply
    them by k). Fused kernel (one opaque call, so its ATen ops say nothing): its CPU time at
    k = 63 stays within 2x of k = 3, where a per-window loop would cost ~20x."""
    if path == 'reference':
        small, large = _elements_processed(3), _elements_processed(63)
        assert large <= 1.5 * small, (small, large)
    else:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            assert _cpu_seconds(63) <= 2.0 * _cpu_seconds(3)
        finally:
            torch.set_num_threads(threads)


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
