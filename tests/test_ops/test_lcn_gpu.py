"""The Triton (GPU) kernels against the float64 references.

They always run through the public ``local_context_norm`` (its dispatch, ``_gpu_lcn``, the
channels_last handling): on CUDA tensors with a GPU; without one (CI) on CPU tensors under
Triton's interpreter, with ``gpu.supports`` widened to CPU tensors, so their arithmetic,
masking, launch configuration and window logic are still checked; only compilation and speed
need the GPU.
"""
from __future__ import annotations

import os
import warnings

import pytest
import torch

CUDA = torch.cuda.is_available()
if not CUDA:
    # Must be set before the kernels are decorated (first import of triton_kernels).
    os.environ['TRITON_INTERPRET'] = '1'
triton = pytest.importorskip('triton', reason='Triton is not installed (pip install triton)')

from lcn_mm.ops import gpu, local_context_norm  # noqa: E402
from oracle import hard_maps, oracle_lcn  # noqa: E402

DEVICE = 'cuda' if CUDA else 'cpu'


def _patch_interpreter_for_numpy2() -> None:
    """Triton 3.6's interpreter calls int() on 1-element arrays, which NumPy >= 2.4 refuses."""
    from triton.runtime import interpreter
    original = getattr(interpreter, '_patch_lang_tensor', None)
    if original is None:  # another Triton version: nothing to patch
        return

    def patch(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, '__index__', lambda self: int(self.handle.data.item()))

    if not getattr(interpreter, '_lcn_patched', False):
        interpreter._patch_lang_tensor = patch
        interpreter._lcn_patched = True


if not CUDA:
    _patch_interpreter_for_numpy2()


_SUPPORTS = gpu.supports


def _supports_here(x):
    """``gpu.supports``, with CPU tensors accepted when they can run under the interpreter."""
    if CUDA:
        return _SUPPORTS(x)
    return x.dtype in gpu._DTYPES and x.numel() > 0 and gpu.kernels() is not None


@pytest.fixture(autouse=True)
def _kernels_take_cpu_tensors(monkeypatch):
    monkeypatch.setattr(gpu, 'supports', _supports_here)
    monkeypatch.setattr(gpu, '_failed_configs', set())


def lcn_gpu(x, g, kh, kw, weight=None, bias=None):
    """LCN through the public op, asserting that the Triton kernels ran (no fallback)."""
    assert gpu.supports(x)
    calls = []
    original = gpu.forward

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    gpu.forward = counted
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('error', RuntimeWarning)  # a kernel failure warns
            y = local_context_norm(x, g, (kh, kw), weight, bias)
    finally:
        gpu.forward = original
    assert calls, 'the Triton kernels did not run'
    return y


CASES = [
    (2, 8, 7, 9, 4, 3, 3),
    (1, 6, 5, 8, 3, 4, 2),      # even window
    (1, 4, 5, 4, 1, 20, 3),     # window taller than the map
    (2, 6, 4, 5, 6, 2, 7),      # one channel per group
    (1, 4, 9, 9, 2, 17, 17),    # global window (the kernels, not the GroupNorm dispatch, on CPU)
    (1, 4, 1, 7, 2, 1, 4),      # single row
    (1, 4, 37, 150, 2, 5, 9),   # several blocks and chunks per line
]


@pytest.mark.parametrize('case', CASES, ids=lambda c: 'x'.join(map(str, c)))
def test_forward_and_gradients_match_float64_reference(case):
    n, c, h, w, g, kh, kw = case
    gen = torch.Generator().manual_seed(sum(case))
    x = (torch.randn(n, c, h, w, generator=gen) * 3 + 50).to(DEVICE).requires_grad_(True)
    weight = torch.randn(c, generator=gen).to(DEVICE).requires_grad_(True)
    bias = torch.randn(c, generator=gen).to(DEVICE).requires_grad_(True)
    y = lcn_gpu(x, g, kh, kw, weight, bias)
    assert y.dtype == torch.float32 and y.shape == x.shape
    x64, w64, b64 = (t.detach().double().requires_grad_(True) for t in (x, weight, bias))
    y_ref = oracle_lcn(x64, g, kh, kw, w64, b64)
    torch.testing.assert_close(y.double(), y_ref, rtol=0, atol=1e-4)
    gy = torch.randn(y.shape, generator=gen).to(DEVICE)
    got = torch.autograd.grad(y, (x, weight, bias), gy)
    want = torch.autograd.grad(y_ref, (x64, w64, b64), gy.double())
    for a, b in zip(got, want):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-4 * b.abs().max().item())


def test_without_affine_and_input_gradient_only():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 6, 7, generator=gen).to(DEVICE).requires_grad_(True)
    y = lcn_gpu(x, 2, 3, 5)
    x64 = x.detach().double().requires_grad_(True)
    y_ref = oracle_lcn(x64, 2, 3, 5)
    torch.testing.assert_close(y.double(), y_ref, rtol=0, atol=1e-5)
    gy = torch.randn(y.shape, generator=gen).to(DEVICE)
    torch.testing.assert_close(torch.autograd.grad(y, x, gy)[0].double(),
                               torch.autograd.grad(y_ref, x64, gy.double())[0],
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('window', [3, 7])
def test_hard_inputs_stay_accurate_against_the_oracle(window):
    """Offsets, steps of 1e4, nodata blocks, ramps, outliers: float32 output within 1e-3 of the
    exact float64 two-pass oracle (the bound in docs/lcn.md), input gradient within 1e-3
    relative."""
    size = 1024 if CUDA else 48
    gen = torch.Generator().manual_seed(3)
    for name, x in hard_maps(size).items():
        want = oracle_lcn(x, 1, window)
        x = x.to(DEVICE).requires_grad_(True)
        y = lcn_gpu(x, 1, window, window)
        err = (y.detach().double().cpu() - want).abs().max().item()
        assert err <= 1e-3, (name, err)
        gy = torch.randn(x.shape, generator=gen)
        (got,) = torch.autograd.grad(y, x, gy.to(DEVICE))
        x64 = x.detach().double().cpu().requires_grad_(True)
        (g64,) = torch.autograd.grad(oracle_lcn(x64, 1, window), x64, gy.double())
        assert (got.double().cpu() - g64).abs().max() <= 1e-3 * g64.abs().max(), name


#: (map, whether its input gradient is checked too) for the long-line test: every hard map
#: along rows, two along columns (the interpreter runs a 4096 x 2 map's 256 row programs slowly).
LONG_MAPS = {'rows': [(name, name == 'step') for name in sorted(hard_maps(8))],
             'columns': [('step', True), ('nodata', False)]}


@pytest.mark.parametrize('axis', ['rows', 'columns'])
def test_long_lines_stay_accurate_against_the_oracle(axis):
    """The box passes' running sums restart every max(128, 2k) outputs, so their rounding does
    not grow with the line: hard maps as 2 x 4096 rows or 4096 x 2 columns (8 x 65536 on a
    GPU), window 7, output within the float32 bound 1e-3 of the oracle, input gradient within
    1e-3 of its max (forward and backward box passes both restart)."""
    across, length = (8, 65536) if CUDA else (2, 4096)
    gen = torch.Generator().manual_seed(5)
    maps = hard_maps(across, width=length)
    for name, check_grad in LONG_MAPS[axis]:
        x = maps[name] if axis == 'rows' else maps[name].transpose(-1, -2).contiguous()
        x64 = x.double().requires_grad_(True)
        want = oracle_lcn(x64, 1, 7)
        xd = x.to(DEVICE).requires_grad_(check_grad)
        y = lcn_gpu(xd, 1, 7, 7)
        err = (y.detach().double().cpu() - want.detach()).abs().max().item()
        assert err <= 1e-3, (name, err)
        if check_grad:
            gy = torch.randn(x.shape, generator=gen)
            (got,) = torch.autograd.grad(y, xd, gy.to(DEVICE))
            (g64,) = torch.autograd.grad(want, x64, gy.double())
            rel = ((got.double().cpu() - g64).abs().max() / g64.abs().max()).item()
            assert rel <= 1e-3, (name, rel)


def test_constant_input_gives_zero_not_nan():
    x = torch.full((1, 4, 9, 8), 3.7e4, device=DEVICE, requires_grad=True)
    y = lcn_gpu(x, 2, 5, 5)
    assert torch.equal(y, torch.zeros_like(y))
    (gx,) = torch.autograd.grad(y.sum(), x)
    assert torch.isfinite(gx).all()


@pytest.mark.parametrize('dtype', [torch.float16] + ([torch.bfloat16] if CUDA else []))
def test_half_inputs_keep_dtype_with_float32_statistics(dtype):
    gen = torch.Generator().manual_seed(2)
    x = (torch.randn(2, 8, 12, 10, generator=gen) * 3 + 100).to(DEVICE, dtype)
    weight = torch.randn(8, generator=gen).to(DEVICE).requires_grad_(True)
    x.requires_grad_(True)
    y = lcn_gpu(x, 4, 5, 5, weight)
    assert y.dtype == dtype
    want = oracle_lcn(x.detach().double(), 4, 5, 5, weight.detach().double())
    torch.testing.assert_close(y.double(), want, rtol=0,
                               atol=0.05 if dtype == torch.bfloat16 else 0.01)
    gx, gw = torch.autograd.grad(y.float().sum(), (x, weight))
    assert gx.dtype == dtype and gw.dtype == torch.float32
    assert torch.isfinite(gx.float()).all()


def test_bitwise_deterministic():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 8, 20, 24, generator=gen).to(DEVICE).requires_grad_(True)
    w = torch.randn(8, generator=gen).to(DEVICE).requires_grad_(True)
    gy = torch.randn(x.shape, generator=gen).to(DEVICE)
    runs = []
    for _ in range(2):
        y = lcn_gpu(x, 4, 7, 7, w)
        runs.append((y, *torch.autograd.grad(y, (x, w), gy)))
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_kernel_failure_falls_back_for_that_configuration_only(monkeypatch):
    """A Triton failure for one configuration: one warning saying why, the right result from
    the fallback, no retry for it, and the kernels still run for every other shape."""
    original = gpu.forward
    calls = []

    def fails_on_six_rows(x, *args, **kwargs):
        calls.append(x.shape[2])
        if x.shape[2] == 6:
            raise RuntimeError('simulated launch failure')
        return original(x, *args, **kwargs)

    monkeypatch.setattr(gpu, 'forward', fails_on_six_rows)
    x = torch.randn(1, 4, 6, 6, device=DEVICE)
    with pytest.warns(RuntimeWarning, match='simulated launch failure') as record:
        y = local_context_norm(x, 2, 3)
    assert len(record) == 1
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        y2 = local_context_norm(x, 2, 3)
        other = torch.randn(1, 4, 7, 6, device=DEVICE)
        y3 = local_context_norm(other, 2, 3)
    assert calls == [6, 7]  # the failed configuration is not retried; others use the kernels
    torch.testing.assert_close(y.double().cpu(), oracle_lcn(x.cpu(), 2, 3), rtol=0, atol=1e-5)
    torch.testing.assert_close(y3.double().cpu(), oracle_lcn(other.cpu(), 2, 3), rtol=0,
                               atol=1e-5)
    assert torch.equal(y, y2)


@pytest.mark.parametrize('n, groups, h, w', [(1, 1, 8192, 8192), (2, 32, 16384, 4096),
                                             (1, 1, 65536, 65536)])
def test_launch_grid_fits_cuda_limits_for_huge_maps(n, groups, h, w):
    """Pure arithmetic: every pixel is covered and no grid dimension exceeds CUDA's limits
    (x < 2^31, y and z <= 65535), for maps far too large to allocate here."""
    grid, block, per_plane = gpu.launch_grid(n, groups, h, w)
    assert len(grid) == 1 and grid[0] <= gpu.MAX_GRID_X
    assert per_plane * block >= h * w > (per_plane - 1) * block
    assert grid[0] == n * groups * per_plane


def test_launch_grid_runs_many_blocks_per_plane():
    """A plane of more than one block through the 1-D grid (the interpreter runs it)."""
    grid, block, per_plane = gpu.launch_grid(1, 2, 40, 60)
    assert per_plane > 1
    x = torch.randn(1, 4, 40, 60, device=DEVICE) * 3 + 100
    torch.testing.assert_close(lcn_gpu(x, 2, 5, 5).double().cpu(), oracle_lcn(x.cpu(), 2, 5),
                               rtol=0, atol=1e-4)


def test_channels_last_keeps_layout_through_the_public_op():
    x = (torch.randn(2, 8, 9, 7) * 5 + 30).to(DEVICE).to(memory_format=torch.channels_last)
    y = lcn_gpu(x, 4, 3, 5)
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y.double().cpu(), oracle_lcn(x.cpu(), 4, 3, 5), rtol=0, atol=1e-5)
