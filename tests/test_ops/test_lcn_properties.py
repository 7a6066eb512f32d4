"""Property-based tests (hypothesis) of the LCN op over shapes, dtypes, groups and windows.

Both implementations are drawn: contiguous float32/float64 inputs take the fused CPU kernel,
channels_last inputs the pure-PyTorch path. Examples are derandomized (fixed per test) so CI is
stable; ``deadline=None`` because the first call may JIT-build the kernel.
"""
from __future__ import annotations

import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lcn_mm import local_context_norm
from oracle import group_norm_formula, oracle_lcn

SETTINGS = settings(max_examples=50, deadline=None, derandomize=True)
TOL = {torch.float32: 2e-4, torch.float64: 1e-9}


@st.composite
def cases(draw, max_hw: int = 12):
    n = draw(st.integers(1, 2))
    groups = draw(st.integers(1, 3))
    cpg = draw(st.integers(1, 3))
    h, w = draw(st.integers(1, max_hw)), draw(st.integers(1, max_hw))
    assume(cpg * h * w > 1)  # one value per group: see test_one_value_per_group below
    kh, kw = draw(st.integers(1, 2 * max_hw)), draw(st.integers(1, 2 * max_hw))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    channels_last = draw(st.booleans())
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.sampled_from([1e-2, 1.0, 30.0]))
    offset = draw(st.sampled_from([0.0, 5.0, -300.0]))
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(n, groups * cpg, h, w, generator=g, dtype=torch.float64) * scale
         + offset).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, groups, (kh, kw), g


def tolerance(x: torch.Tensor, extra_offset: float = 0.0) -> float:
    """Error budget: a few hundred ulps times the condition number |x| / std of the data.

    float64 inputs get cond**2: the one-pass shifted window moments lose digits quadratically
    when the per-group shift is far from the window mean (still ~1e-8 at cond 1e4).
    """
    xd = x.double()
    std = float(xd.std()) if x.numel() > 1 else 1.0
    cond = 1 + (float(xd.abs().max()) + extra_offset) / max(std, 1e-12)
    return 300 * torch.finfo(x.dtype).eps * (cond if x.dtype == torch.float32 else cond ** 2)


def per_group(values: torch.Tensor, x: torch.Tensor, groups: int) -> torch.Tensor:
    """(N, G) values broadcast to x's channels (each group's channels get its value)."""
    n, c = x.shape[:2]
    return values.repeat_interleave(c // groups, dim=1).view(n, c, 1, 1).to(x.dtype)


@SETTINGS
@given(cases())
def test_finite_and_dtype(case) -> None:
    x, groups, window, g = case
    weight = torch.randn(x.shape[1], generator=g, dtype=torch.float64).to(x.dtype)
    bias = torch.randn(x.shape[1], generator=g, dtype=torch.float64).to(x.dtype)
    y = local_context_norm(x, groups, window, weight, bias)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.isfinite(y).all()
    # Normalised values are bounded: among n values, |x - mean| / std <= sqrt(n - 1), with n
    # the values in the pixel's *clipped* window (the nominal window overstates it at borders).
    h, w = x.shape[-2:]
    kh, kw = window
    i, j = torch.arange(h), torch.arange(w)
    rows = (i + kh // 2).clamp(max=h - 1) - (i - (kh - 1) // 2).clamp(min=0) + 1
    cols = (j + kw // 2).clamp(max=w - 1) - (j - (kw - 1) // 2).clamp(min=0) + 1
    count = rows[:, None] * cols[None, :] * (x.shape[1] // groups)
    bound = (count.double() - 1).clamp(min=0).sqrt() * (1 + 1e-4) + 1e-4
    xhat = local_context_norm(x, groups, window)
    assert (xhat.double().abs() <= bound).all()


@SETTINGS
@given(cases())
def test_constant_input_gives_bias(case) -> None:
    x, groups, window, g = case
    const = torch.full_like(x, 7.5)
    bias = torch.randn(x.shape[1], generator=g, dtype=torch.float64).to(x.dtype)
    y = local_context_norm(const, groups, window, None, bias)
    torch.testing.assert_close(y, bias.view(1, -1, 1, 1).expand_as(y), rtol=0, atol=1e-3)


@SETTINGS
@given(cases())
def test_group_norm_limit(case) -> None:
    x, groups, _, _ = case
    h, w = x.shape[-2:]
    window = (2 * h - 1, 2 * w - 1)  # every clipped window is the whole map
    # Against GroupNorm written out in float64 (tests/oracle.py), not F.group_norm.
    torch.testing.assert_close(local_context_norm(x, groups, window).double(),
                               group_norm_formula(x, groups), rtol=0, atol=TOL[x.dtype] * 10)


@SETTINGS
@given(cases())
def test_invariant_to_per_group_shift_and_positive_scale(case) -> None:
    x, groups, window, g = case
    n = x.shape[0]
    shift = per_group(torch.empty(n, groups, dtype=torch.float64).uniform_(
        -100, 100, generator=g), x, groups)
    scale = per_group(torch.empty(n, groups, dtype=torch.float64).uniform_(
        0.2, 5, generator=g), x, groups)
    eps = 1e-12 if x.dtype == torch.float64 else 1e-10
    ref = local_context_norm(x, groups, window, eps=eps)
    # Precision: shifted inputs keep ~|x|/|shift| of their digits; compare on the scale of
    # the unshifted input's deviations (the op works in float32 for float32 input).
    # Per-pixel error budget from the local condition number (offset / window std).
    local_std = _local_var(x.double(), groups, window).sqrt()
    magnitude = float(x.double().abs().max()) * 5 + 100
    ok = local_std > 1e-5 * magnitude  # skip (near-)constant windows: 0/0 is not defined
    cond = 1 + magnitude / local_std.clamp_min(1e-300)
    budget = 300 * torch.finfo(x.dtype).eps * (cond if x.dtype == torch.float32 else cond ** 2)
    for y in (local_context_norm(x + shift, groups, window, eps=eps),
              local_context_norm(x * scale, groups, window, eps=eps)):
        diff = (y.double() - ref.double()).abs()
        assert (diff[ok] <= budget[ok]).all()


def _local_var(x: torch.Tensor, groups: int, window) -> torch.Tensor:
    """Window variance of each element's group (float64), to skip ill-conditioned pixels."""
    n, c, h, w = x.shape
    out = torch.empty_like(x)
    kh, kw = window
    xg = x.view(n, groups, c // groups, h, w)
    for i in range(h):
        for j in range(w):
            r0, r1 = max(0, i - (kh - 1) // 2), min(h, i + kh // 2 + 1)
            c0, c1 = max(0, j - (kw - 1) // 2), min(w, j + kw // 2 + 1)
            v = xg[:, :, :, r0:r1, c0:c1].reshape(n, groups, -1).var(dim=-1, unbiased=False)
            out[:, :, i, j] = v.repeat_interleave(c // groups, dim=1)
    return out


@SETTINGS
@given(cases(max_hw=16), st.data())
def test_crop_consistency(case, data) -> None:
    """Output at a pixel depends only on the input within its window: crops agree inside."""
    x, groups, window, _ = case
    h, w = x.shape[-2:]
    (kh, kw), up, left = window, (window[0] - 1) // 2, (window[1] - 1) // 2
    down, right = kh // 2, kw // 2
    r0 = data.draw(st.integers(0, h - 1))
    r1 = data.draw(st.integers(r0 + 1, h))
    c0 = data.draw(st.integers(0, w - 1))
    c1 = data.draw(st.integers(c0 + 1, w))
    assume(x.shape[1] // groups * (r1 - r0) * (c1 - c0) > 1)
    whole = local_context_norm(x, groups, window)
    crop = local_context_norm(x[:, :, r0:r1, c0:c1].contiguous(
        memory_format=torch.channels_last if not x.is_contiguous() else torch.contiguous_format),
        groups, window)
    # Rows whose window (clipped at the image border) lies inside the crop.
    rows = [i for i in range(r0, r1)
            if (i - up >= r0 or r0 == 0) and (i + down < r1 or r1 == h)]
    cols = [j for j in range(c0, c1)
            if (j - left >= c0 or c0 == 0) and (j + right < c1 or c1 == w)]
    if not rows or not cols:
        return
    ri, ci = torch.tensor(rows), torch.tensor(cols)
    a = whole[:, :, ri][:, :, :, ci]
    b = crop[:, :, ri - r0][:, :, :, ci - c0]
    torch.testing.assert_close(b, a, rtol=0, atol=tolerance(x))


def test_one_value_per_group() -> None:
    """Found by hypothesis: F.group_norm refuses groups of one value; LCN gives x - mean = 0."""
    x = torch.randn(1, 2, 1, 1)
    y = local_context_norm(x, 2, 3)
    assert torch.equal(y, torch.zeros_like(x))  # x - mean = 0 exactly


def test_channels_last_large_offset() -> None:
    """Found by hypothesis: float32 inputs with |mean|/std ~ 4e3 and a tiny eps, in both
    memory formats (the fused kernel and the pure-PyTorch path), against the oracle."""
    x = torch.tensor([[[[0.0154], [-0.0029]], [[-0.0218], [0.0057]]]]) - 63
    ref = oracle_lcn(x, 2, 3, 1, eps=1e-10)
    for fmt in (torch.contiguous_format, torch.channels_last):
        y = local_context_norm(x.contiguous(memory_format=fmt), 2, (3, 1), eps=1e-10)
        torch.testing.assert_close(y.double(), ref, rtol=0, atol=1e-4)
