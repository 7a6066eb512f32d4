"""Triton kernels of LCN (GPU; also run by Triton's CPU interpreter in the tests).

Layout: ``x`` is contiguous (N, C, H, W); one (n, g) "plane" is the ``cpg`` consecutive
channel maps of a group. Forward and backward each read the full tensor as GroupNorm does
(forward: 1 read for the statistics, 1 read + 1 write to normalize; backward: 2 reads for
the per-pixel sums, 2 reads + 1 write for dx); everything else touches per-group maps,
``cpg`` times smaller. Window sums are separable clipped box sums, each a running sum of
(value entering - value leaving the window) in float64 after a per-group shift, so the cost
does not depend on the window and ``E[x^2] - E[x]^2`` does not cancel; the running sums
restart from a direct window sum every ``max(128, 2k)`` outputs or so, so their rounding error
does not grow with the length of a line.
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _group_shift(x_ptr, base, HW, cpg, CPG_P2: tl.constexpr):
    """Per-plane shift (float64): the group mean over 16 evenly spaced pixels, so that one
    outlying pixel cannot put it far from the data (the squares summed are (m - k)^2)."""
    ch = tl.arange(0, CPG_P2)
    pix = tl.minimum(tl.arange(0, 16) * tl.maximum(HW // 16, 1), HW - 1)
    v = tl.load(x_ptr + base + ch.to(tl.int64)[:, None] * HW + pix[None, :],
                mask=(ch < cpg)[:, None], other=0.0)
    return tl.sum(tl.sum(v.to(tl.float64), axis=1), axis=0) / (cpg * 16)


@triton.jit
def _split_mean(k, mu):
    """mu - k (float64) as hi + lo in float32: ``(x - hi) - lo`` is x - mu with one rounding of
    the small result, where ``x - float32(mu)`` would carry half an ulp of |mu| (5e-4 at 1e4)."""
    m = k + mu
    hi = m.to(tl.float32)
    return hi, (m - hi.to(tl.float64)).to(tl.float32)


@triton.jit
def _window_count(i, length, lo, hi):
    """Number of real pixels of the clipped window ``[i - lo, i + hi]`` (1 for the padding
    lanes outside ``[0, length)``, which are never stored, so that they divide safely)."""
    return tl.maximum(tl.minimum(i + hi, length - 1) - tl.maximum(i - lo, 0) + 1, 1)


@triton.jit
def _pixel_sums_kernel(x_ptr, maps_ptr, C, HW, G, cpg, NBLK,
                       CPG_P2: tl.constexpr, BLOCK: tl.constexpr):
    """maps[ng, 0] = sum_c (x - k), maps[ng, 1] = sum_c (x - k)^2 per pixel, in float64.

    All kernels over pixels use a 1-D grid of (N*G) x NBLK programs: CUDA allows 2^31 - 1
    programs along x but only 65535 along y, fewer than a 8192 x 8192 map's blocks."""
    ng = tl.program_id(0) // NBLK
    offs = (tl.program_id(0) % NBLK) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < HW
    base = ((ng // G) * C + (ng % G) * cpg).to(tl.int64) * HW
    k = _group_shift(x_ptr, base, HW, cpg, CPG_P2)
    s1 = tl.zeros([BLOCK], tl.float64)
    s2 = tl.zeros([BLOCK], tl.float64)
    ptr = x_ptr + base + offs
    for _ in range(cpg):
        v = tl.load(ptr, mask=mask, other=0.0).to(tl.float64) - k
        s1 += v
        s2 += v * v
        ptr += HW
    out = maps_ptr + ng.to(tl.int64) * 2 * HW + offs
    tl.store(out, s1, mask=mask)
    tl.store(out + HW, s2, mask=mask)


@triton.jit
def _box_kernel(src_ptr, dst_ptr, mu_ptr, r_ptr, out0_ptr, out1_ptr,
                L, n_lines, lines_per_plane, HW, line_stride, elem_stride, lo, hi, SEG,
                L2, lo2, hi2, cpg, eps,
                MODE: tl.constexpr, BLINES: tl.constexpr, BL: tl.constexpr):
    """Clipped box sums ``[e - lo, e + hi]`` along one axis of both maps of each plane.

    ``src`` is (NG, 2, H, W) float64. A line is a row (``elem_stride`` 1) or a column
    (``line_stride`` 1) of a plane. The output at ``e`` is P[min(e + hi, L - 1)] -
    P[e - lo - 1] for the prefix sums P, computed as a running (prefix) sum of the value
    entering the window (``hi`` ahead of the output) minus the value leaving it (``lo + 1``
    behind): one pass over the line whatever the window, in float64. Every ``SEG`` outputs (a
    multiple of ``BL``, at least twice the window) the running sums restart from a direct sum
    of their window, as in the CPU kernel: a running sum gains ~u|sum| of rounding error per
    step, so without restarts its error would grow with the length of the line.

    MODE 0 writes the two box sums to ``dst`` (same layout). MODE 1 (forward, columns)
    turns them into the window mean minus the shift (float64 map ``out0``) and rstd (float32
    map ``out1``); ``L2, lo2, hi2`` describe the other axis for the pixel counts. MODE 2
    (backward, columns) writes ``out0 = box(beta) / r`` and ``out1 = box(alpha) + mu * box(beta)``.
    """
    lines = tl.program_id(0) * BLINES + tl.arange(0, BLINES)
    lmask = lines < n_lines
    plane = lines // lines_per_plane
    j = lines % lines_per_plane
    pix_base = plane.to(tl.int64) * HW + j.to(tl.int64) * line_stride
    src_base = pix_base + plane.to(tl.int64) * HW  # maps are (NG, 2, H, W)
    other = _window_count(j, L2, lo2, hi2).to(tl.float64) * cpg  # used by MODE 1 only
    last = (tl.arange(0, BL) == BL - 1)[None, :]
    for e0 in range(0, L, SEG):
        # Restart: the window sum of output e0 - 1 (positions e0 - 1 - lo .. e0 - 1 + hi),
        # summed directly into a 2-D accumulator that is reduced once.
        acc0 = tl.zeros([BLINES, BL], tl.float64)
        acc1 = tl.zeros([BLINES, BL], tl.float64)
        for s in range(e0 - 1 - lo, e0 + hi, BL):
            p = s + tl.arange(0, BL)
            m_win = lmask[:, None] & ((p >= 0) & (p < L) & (p < e0 + hi))[None, :]
            p_win = src_base[:, None] + (p.to(tl.int64) * elem_stride)[None, :]
            acc0 += tl.load(src_ptr + p_win, mask=m_win, other=0.0)
            acc1 += tl.load(src_ptr + p_win + HW, mask=m_win, other=0.0)
        box0 = tl.sum(acc0, axis=1)
        box1 = tl.sum(acc1, axis=1)
        for start in range(e0, tl.minimum(e0 + SEG, L), BL):
            e = start + tl.arange(0, BL)      # output position
            q = e + hi                         # leading position
            t = e - lo - 1                     # trailing position
            m_lead = lmask[:, None] & (q < L)[None, :]
            m_trail = lmask[:, None] & ((t >= 0) & (t < L))[None, :]
            p_lead = src_base[:, None] + (q.to(tl.int64) * elem_stride)[None, :]
            p_trail = src_base[:, None] + (t.to(tl.int64) * elem_stride)[None, :]
            # The window sum moves by (entering - leaving) value: one running sum per map.
            d0 = (tl.load(src_ptr + p_lead, mask=m_lead, other=0.0)
                  - tl.load(src_ptr + p_trail, mask=m_trail, other=0.0))
            d1 = (tl.load(src_ptr + p_lead + HW, mask=m_lead, other=0.0)
                  - tl.load(src_ptr + p_trail + HW, mask=m_trail, other=0.0))
            run0 = box0[:, None] + tl.cumsum(d0, axis=1)
            run1 = box1[:, None] + tl.cumsum(d1, axis=1)
            # Carry the chunk's last value (read out as a masked sum: Triton 3.6 fails to
            # compile a loop-carried ``acc += tl.sum(...)`` of float64 here).
            box0 = tl.sum(tl.where(last, run0, 0.0), axis=1)
            box1 = tl.sum(tl.where(last, run1, 0.0), axis=1)
            m_out = lmask[:, None] & ((e >= 0) & (e < L))[None, :]
            e_off = (e.to(tl.int64) * elem_stride)[None, :]
            if MODE == 0:
                p_out = src_base[:, None] + e_off
                tl.store(dst_ptr + p_out, run0, mask=m_out)
                tl.store(dst_ptr + p_out + HW, run1, mask=m_out)
            elif MODE == 1:
                count = _window_count(e, L, lo, hi).to(tl.float64)[None, :] * other[:, None]
                mean = run0 / count
                var = tl.maximum(run1 / count - mean * mean, 0.0)
                rstd = 1.0 / tl.sqrt(var + eps)
                p_out = pix_base[:, None] + e_off
                tl.store(out0_ptr + p_out, mean, mask=m_out)
                tl.store(out1_ptr + p_out, rstd.to(tl.float32), mask=m_out)
            else:
                p_out = pix_base[:, None] + e_off
                mu = tl.load(mu_ptr + p_out, mask=m_out, other=0.0).to(tl.float64)
                r = tl.load(r_ptr + p_out, mask=m_out, other=1.0).to(tl.float64)
                tl.store(out0_ptr + p_out, (run1 / r).to(tl.float32), mask=m_out)
                tl.store(out1_ptr + p_out, (run0 + mu * run1).to(tl.float32), mask=m_out)


@triton.jit
def _normalize_kernel(x_ptr, y_ptr, w_ptr, b_ptr, mu_ptr, r_ptr, C, HW, G, cpg, NBLK,
                      HAS_W: tl.constexpr, HAS_B: tl.constexpr,
                      CPG_P2: tl.constexpr, BLOCK: tl.constexpr):
    """y = ((x - hi) - lo) * rstd * weight + bias with hi + lo = mu."""
    ng = tl.program_id(0) // NBLK
    offs = (tl.program_id(0) % NBLK) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < HW
    base = ((ng // G) * C + (ng % G) * cpg).to(tl.int64) * HW
    k = _group_shift(x_ptr, base, HW, cpg, CPG_P2)
    hi, lo = _split_mean(k, tl.load(mu_ptr + ng.to(tl.int64) * HW + offs, mask=mask, other=0.0))
    r = tl.load(r_ptr + ng.to(tl.int64) * HW + offs, mask=mask, other=0.0)
    ch = (ng % G) * cpg
    offs64 = base + offs
    for c in range(cpg):
        v = ((tl.load(x_ptr + offs64, mask=mask, other=0.0).to(tl.float32) - hi) - lo) * r
        if HAS_W:
            v = v * tl.load(w_ptr + ch + c)
        if HAS_B:
            v = v + tl.load(b_ptr + ch + c)
        tl.store(y_ptr + offs64, v.to(y_ptr.dtype.element_ty), mask=mask)
        offs64 += HW


@triton.jit
def _backward_sums_kernel(x_ptr, dy_ptr, w_ptr, mu_ptr, r_ptr, maps_ptr, pw_ptr, pb_ptr,
                          C, HW, G, cpg, H, W, lo_h, hi_h, lo_w, hi_w, NBLK,
                          HAS_W: tl.constexpr, NEED_MAPS: tl.constexpr, NEED_W: tl.constexpr,
                          NEED_B: tl.constexpr, CPG_P2: tl.constexpr, BLOCK: tl.constexpr):
    """Per-pixel A = sum_c gamma*dy and B = sum_c gamma*dy*xhat turned into the maps
    beta = -r^2 B / n and alpha = -r A / n - (mu - k) beta (float64), plus this block's
    partial sums of dy*xhat and dy per channel (for the weight and bias gradients)."""
    ng = tl.program_id(0) // NBLK
    blk = tl.program_id(0) % NBLK
    offs = blk * BLOCK + tl.arange(0, BLOCK)
    mask = offs < HW
    n = ng // G
    ch = (ng % G) * cpg
    base = (n * C + ch).to(tl.int64) * HW
    k = _group_shift(x_ptr, base, HW, cpg, CPG_P2)
    mu = tl.load(mu_ptr + ng.to(tl.int64) * HW + offs, mask=mask, other=0.0)
    hi, lo = _split_mean(k, mu)
    r = tl.load(r_ptr + ng.to(tl.int64) * HW + offs, mask=mask, other=0.0)
    row = (n.to(tl.int64) * NBLK + blk) * C
    a = tl.zeros([BLOCK], tl.float32)
    b = tl.zeros([BLOCK], tl.float32)
    offs64 = base + offs
    for c in range(cpg):
        xh = ((tl.load(x_ptr + offs64, mask=mask, other=0.0).to(tl.float32) - hi) - lo) * r
        dy = tl.load(dy_ptr + offs64, mask=mask, other=0.0).to(tl.float32)
        if NEED_W:
            tl.store(pw_ptr + row + ch + c, tl.sum(dy * xh, axis=0))
        if NEED_B:
            tl.store(pb_ptr + row + ch + c, tl.sum(dy, axis=0))
        if HAS_W:
            dy = dy * tl.load(w_ptr + ch + c)
        a += dy
        b += dy * xh
        offs64 += HW
    if NEED_MAPS:
        h = offs // W
        count = (_window_count(h, H, lo_h, hi_h).to(tl.float64)
                 * _window_count(offs - h * W, W, lo_w, hi_w).to(tl.float64) * cpg)
        r64 = r.to(tl.float64)
        beta = -(r64 * r64) * b.to(tl.float64) / count
        alpha = -r64 * a.to(tl.float64) / count - mu * beta
        out = maps_ptr + ng.to(tl.int64) * 2 * HW + offs
        tl.store(out, alpha, mask=mask)
        tl.store(out + HW, beta, mask=mask)


@triton.jit
def _backward_dx_kernel(x_ptr, dy_ptr, w_ptr, mu_ptr, r_ptr, p_ptr, q_ptr, dx_ptr,
                        C, HW, G, cpg, NBLK, HAS_W: tl.constexpr,
                        CPG_P2: tl.constexpr, BLOCK: tl.constexpr):
    """dx = gamma*dy*r + xhat * P + Q with P = box(beta)/r and Q = box(alpha) + mu*box(beta)."""
    ng = tl.program_id(0) // NBLK
    offs = (tl.program_id(0) % NBLK) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < HW
    ch = (ng % G) * cpg
    base = ((ng // G) * C + ch).to(tl.int64) * HW
    k = _group_shift(x_ptr, base, HW, cpg, CPG_P2)
    pix = ng.to(tl.int64) * HW + offs
    hi, lo = _split_mean(k, tl.load(mu_ptr + pix, mask=mask, other=0.0))
    r = tl.load(r_ptr + pix, mask=mask, other=0.0)
    p = tl.load(p_ptr + pix, mask=mask, other=0.0)
    q = tl.load(q_ptr + pix, mask=mask, other=0.0)
    offs64 = base + offs
    for c in range(cpg):
        xh = ((tl.load(x_ptr + offs64, mask=mask, other=0.0).to(tl.float32) - hi) - lo) * r
        dy = tl.load(dy_ptr + offs64, mask=mask, other=0.0).to(tl.float32)
        if HAS_W:
            dy = dy * tl.load(w_ptr + ch + c)
        tl.store(dx_ptr + offs64, (dy * r + xh * p + q).to(dx_ptr.dtype.element_ty), mask=mask)
        offs64 += HW
