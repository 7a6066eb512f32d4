"""Side-by-side speed of two revisions' fused CPU kernels, in one process, call by call.

Each checkout's ``lcn_mm/ops/csrc/lcn_cpu.cpp`` is compiled with the flags of its own
``native.py`` and both libraries are loaded next to each other (plain C ABI, no operator
registration to clash). Every iteration times forward+backward of A, then of B (order
alternating), on the same tensors with outputs allocated once: no Python layer, no page
faults, and a slow stretch of a shared machine hits both sides of a pair. The summary is the
median of the per-pair ratios B/A with quartiles; ``ab_lcn_speed.py`` measures the whole op
(Python layer, allocations) instead. Each side calls its ABI as its ``native.py`` does: mu
saved in float32 (ABI 3) or float64 (ABI 4), statistics kept from ``KEEP_STATS_MIN_CPG``
channels per group.

    git archive <baseline-commit> lcn_mm | tar -x -C /tmp/lcn_base
    python tools/analysis_tools/ab_lcn_kernel.py /tmp/lcn_base . --pairs 200 --out ab.json
"""
from __future__ import annotations

import argparse
import ctypes
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from benchmark_norms import SHAPES

WINDOW = 31


class Side:
    """One revision's kernel library, called as that revision's native.py calls it."""

    def __init__(self, root: Path, build_dir: Path, tag: str) -> None:
        native = (root / 'lcn_mm/ops/native.py').read_text()
        flags = json.loads(re.search(r'_FLAGS = (\[.*\])', native).group(1).replace("'", '"'))
        self.keep_min_cpg = int(re.search(r'KEEP_STATS_MIN_CPG = (\d+)', native).group(1))
        out = build_dir / f'lib_{tag}.so'
        subprocess.run(['g++', *flags, str(root / 'lcn_mm/ops/csrc/lcn_cpu.cpp'), '-o', str(out)],
                       check=True)
        self.lib = ctypes.CDLL(str(out))
        self.abi = self.lib.lcn_abi_version()
        i64, dbl, ptr = ctypes.c_int64, ctypes.c_double, ctypes.c_void_p
        self.lib.lcn_forward_f32.argtypes = [ptr] * 6 + [i64] * 9 + [dbl, ctypes.c_int]
        self.lib.lcn_backward_f32.argtypes = [ptr] * 8 + [i64] * 9 + [dbl, ctypes.c_int]

    def prepare(self, x: torch.Tensor, groups: int) -> None:
        n, c, h, w = x.shape
        self.keep = c // groups >= self.keep_min_cpg
        mu_dtype = torch.float64 if self.abi >= 4 else torch.float32
        self.y, self.dx = torch.empty_like(x), torch.empty_like(x)
        self.mu = torch.empty((n, groups, h, w), dtype=mu_dtype)
        self.rstd = torch.empty((n, groups, h, w))
        self.dw, self.db = (torch.empty((n, c), dtype=torch.float64) for _ in range(2))

    def step(self, x, dy, weight, bias, groups: int, part: str = 'both') -> None:
        n, c, h, w = x.shape
        lo, hi = (WINDOW - 1) // 2, WINDOW // 2
        dims = (n, groups, c // groups, h, w, lo, hi, lo, hi)
        mu = self.mu.data_ptr() if self.keep else None
        rstd = self.rstd.data_ptr() if self.keep else None
        if part != 'bwd':
            self.lib.lcn_forward_f32(x.data_ptr(), weight.data_ptr(), bias.data_ptr(),
                                     self.y.data_ptr(), mu, rstd, *dims, 1e-5, 1)
        if part != 'fwd':
            self.lib.lcn_backward_f32(x.data_ptr(), dy.data_ptr(), weight.data_ptr(), mu, rstd,
                                      self.dx.data_ptr(), self.dw.data_ptr(),
                                      self.db.data_ptr(), *dims, 1e-5, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('baseline', type=Path, help='folder that contains the baseline lcn_mm')
    ap.add_argument('candidate', type=Path, help='folder that contains the candidate lcn_mm')
    ap.add_argument('--pairs', type=int, default=100, help='A/B pairs per shape')
    ap.add_argument('--match', default='', help='only the shapes whose label contains this')
    ap.add_argument('--part', choices=('both', 'fwd', 'bwd'), default='both',
                    help='time forward+backward (with saved statistics), or one of them')
    ap.add_argument('--build-dir', type=Path, help='keep the two libraries here (profilers)')
    ap.add_argument('--out', type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        build = args.build_dir or Path(tmp)
        build.mkdir(parents=True, exist_ok=True)
        sides = {'A': Side(args.baseline, build, 'A'), 'B': Side(args.candidate, build, 'B')}
    raw, rows = {}, []
    print('| shape | A ms (median) | B ms (median) | B/A per pair: median | quartiles |\n'
          '|---|---|---|---|---|')
    for label, shape, groups in SHAPES:
        if args.match not in label:
            continue
        gen = torch.Generator().manual_seed(0)
        x, dy = torch.randn(*shape, generator=gen), torch.randn(*shape, generator=gen)
        weight, bias = torch.ones(shape[1]), torch.zeros(shape[1])
        for side in sides.values():
            side.prepare(x, groups)
            side.step(x, dy, weight, bias, groups)  # warm: scratch buffers, caches
        pairs = []
        for p in range(args.pairs):
            t = {}
            for tag in ('A', 'B') if p % 2 == 0 else ('B', 'A'):
                t0 = time.perf_counter()
                sides[tag].step(x, dy, weight, bias, groups, args.part)
                t[tag] = time.perf_counter() - t0
            pairs.append((t['A'], t['B']))
        raw[label] = pairs
        q1, med, q3 = statistics.quantiles(sorted(b / a for a, b in pairs), n=4)
        a_ms = 1e3 * statistics.median(p[0] for p in pairs)
        b_ms = 1e3 * statistics.median(p[1] for p in pairs)
        rows.append(dict(shape=label, a_ms=a_ms, b_ms=b_ms, ratio=med, q1=q1, q3=q3,
                         pairs=len(pairs), keep_stats={k: s.keep for k, s in sides.items()}))
        print(f'| {label} | {a_ms:.2f} | {b_ms:.2f} | {med:.3f} | {q1:.3f}-{q3:.3f} |', flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(dict(
            command=' '.join(sys.argv), part=args.part, window=WINDOW, threads=1,
            torch=torch.__version__, abi={k: s.abi for k, s in sides.items()}, raw=raw,
            summary=rows), indent=1))


if __name__ == '__main__':
    main()
