"""The Triton (GPU) kernels against the float64 reference.

With a GPU they run through ``local_context_norm`` on CUDA tensors. Without one (CI) the same
kernels run on CPU tensors under Triton's interpreter, so their arithmetic, masking and window
logic are still checked; only compilation and speed need the GPU.
"""
from __future__ import annotations

import os
import warnings
from unittest import mock

import pytest
import torch

CUDA = torch.cuda.is_available()
if not CUDA:
    # Must be set before the kernels are decorated (first import of triton_kernels).
    os.environ['TRITON_INTERPRET'] = '1'
triton = pytest.importorskip('triton', reason='Triton is not installed (pip install triton)')

from lcn_mm.ops import gpu, local_context_norm  # noqa: E402
from lcn_mm.ops import library  # noqa: E402

from lcn_mm.ops.reference import adversarial_maps as _adversarial_maps  # noqa: E402
from lcn_mm.ops.reference import reference_lcn  # noqa: E402

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


def lcn_gpu(x, g, kh, kw, weight=None, bias=None):
    """LCN through the Triton kernels: the public op on CUDA, the kernels directly otherwise."""
    if CUDA:
        assert gpu.supports(x)
        y = local_context_norm(x, g, (kh, kw), weight, bias)
        assert not gpu._failed, 'the Triton kernels failed and LCN fell back'
        return y
    # The operator itself (no GroupNorm dispatch in front), its GPU implementation forced.
    with mock.patch.object(library, '_backend', lambda x, detach_stats: 'gpu'):
        return torch.ops.lcn_mm.local_context_norm(x, weight, bias, g, kh, kw, 1e-5, False,
                                                   True)[0]


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
    y_ref = reference_lcn(x64, g, kh, kw, w64, b64)
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
    y_ref = reference_lcn(x64, 2, 3, 5)
    torch.testing.assert_close(y.double(), y_ref, rtol=0, atol=1e-5)
    gy = torch.randn(y.shape, generator=gen).to(DEVICE)
    torch.testing.assert_close(torch.autograd.grad(y, x, gy)[0].double(),
                               torch.autograd.grad(y_ref, x64, gy.double())[0],
                               rtol=1e-4, atol=1e-5)


def test_adversarial_offsets_and_ramps_stay_accurate():
    """1e4 offsets, constant regions and noiseless ramps: float64 window sums after a shift."""
    x = _adversarial_maps(256 if not CUDA else 1024).to(DEVICE)
    want = local_context_norm(x.double().cpu(), 2, 31)
    x.requires_grad_(True)
    y = lcn_gpu(x, 2, 31, 31)
    assert torch.isfinite(y).all()
    assert (y.detach().double().cpu() - want).abs().max().item() <= 1e-3
    gy = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    (got,) = torch.autograd.grad(y, x, gy.to(DEVICE))
    x64 = x.detach().double().cpu().requires_grad_(True)
    (g64,) = torch.autograd.grad(local_context_norm(x64, 2, 31), x64, gy.double())
    assert torch.isfinite(got).all()
    assert (got.double().cpu() - g64).abs().max() <= 1e-3 * g64.abs().max()


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
    want = reference_lcn(x.detach().double(), 4, 5, 5, weight.detach().double())
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


def test_kernel_failure_falls_back_with_one_warning(monkeypatch):
    """A Triton compile/launch failure must not break training: one warning, same result."""
    monkeypatch.setattr(gpu, '_failed', False)
    monkeypatch.setattr(gpu, 'supports', lambda x: gpu.kernels() is not None)

    def broken(*args, **kwargs):
        raise RuntimeError('simulated compile failure')

    monkeypatch.setattr(gpu, 'forward', broken)
    x = torch.randn(1, 4, 6, 6, device=DEVICE)
    with pytest.warns(RuntimeWarning, match='Triton LCN kernels failed'):
        y = local_context_norm(x, 2, 3)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        y2 = local_context_norm(x, 2, 3)
    want = reference_lcn(x.double(), 2, 3, 3)
    torch.testing.assert_close(y.double(), want, rtol=0, atol=1e-5)
    assert torch.equal(y, y2)
    assert gpu.kernels() is None  # turned off: no retry (and recompile) on every call


@pytest.mark.skipif(not CUDA, reason='needs a GPU: channels_last CUDA tensors')
def test_channels_last_on_gpu_keeps_layout():
    x = torch.randn(2, 8, 9, 11, device='cuda').to(memory_format=torch.channels_last)
    y = local_context_norm(x, 2, (4, 5))
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, local_context_norm(x.contiguous(), 2, (4, 5)))
