"""Side-by-side speed of two checkouts of lcn_mm (A = baseline, B = candidate) on the LCN op.

Each round times forward+backward of ``local_context_norm`` in a fresh process per checkout,
alternating A and B so that machine noise hits both; prints per-shape medians and the ratio
B/A, and writes the raw per-round times as JSON. With one thread the time is the thread's CPU
time (``time.thread_time``), which other processes on a shared machine disturb less than wall
time; ``--pure`` times the pure-PyTorch path instead of the fused CPU kernel.
``--cases deployment`` takes the shapes of ``benchmark_norms.py`` (window 31, weight and bias),
those of the deployment A/B table (docs/deployment.md); ``--fwd`` also times the forward pass
under ``torch.no_grad()`` (entries ``'<case> [fwd]'``). A timed sample repeats the step until
it lasts ``--min-sample`` seconds, so that small maps are timed over many calls.

``--pairs P`` times in pairs instead: per round one long-lived worker process per checkout,
and P times per case one sample of A right next to one of B (order alternating), so that a
slow stretch of a shared machine (other tenants' cache and memory traffic: per-round ratios of
the default mode spread 0.7-1.8 on the 2-core VM even with nothing else running here) hits
both sides of a pair; the summary is the median of the per-pair ratios B/A with its quartiles.

    git archive <baseline-commit> lcn_mm | tar -x -C /tmp/lcn_base
    python tools/analysis_tools/ab_lcn_speed.py /tmp/lcn_base . --rounds 7 --out ab.json
    python tools/analysis_tools/ab_lcn_speed.py /tmp/lcn_base . --rounds 5 --pairs 30 --out ab.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import torch
from benchmark_norms import SHAPES

# (label, shape, groups, window, with bias)
CASE_SETS = {
    'issue14': [
        ('cpg 8, 100x168, k31', (1, 256, 100, 168), 32, 31, False),
        ('cpg 2, 256x256, k7', (1, 64, 256, 256), 32, 7, False),
        ('cpg 16, 50x84, k63', (1, 512, 50, 84), 32, 63, False),
    ],
    'deployment': [(label, shape, groups, 31, True) for label, shape, groups in SHAPES],
}

CHILD = r'''
import json, sys, time, torch
root, threads, path, cases, mode = sys.argv[1], int(sys.argv[2]), *sys.argv[3:6]
sys.path.insert(0, root)
import lcn_mm.ops as ops
from lcn_mm.ops import native
if path == 'pure':
    native.supports = lambda x: False
else:
    assert native.library() is not None, 'kernels not built'
torch.set_num_threads(threads)
clock = time.thread_time if threads == 1 else time.perf_counter
fns = {}
for label, shape, g, k, with_bias in json.loads(cases):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=gen).requires_grad_(True)
    w = torch.ones(shape[1], requires_grad=True)
    b = torch.zeros(shape[1], requires_grad=True) if with_bias else None
    inputs = (x, w, b) if with_bias else (x, w)
    gy = torch.randn(*shape, generator=gen)
    def step(x=x, w=w, b=b, g=g, k=k, inputs=inputs, gy=gy):
        torch.autograd.grad(ops.local_context_norm(x, g, k, w, b), inputs, gy)
    def forward(x=x, w=w, b=b, g=g, k=k):
        with torch.no_grad():
            ops.local_context_norm(x, g, k, w, b)
    fns[label], fns[label + ' [fwd]'] = step, forward
def timed(fn, calls):
    t0 = clock()
    for _ in range(calls):
        fn()
    return (clock() - t0) / calls
if mode == 'serve':  # paired mode: one sample per request on stdin
    for fn in fns.values():
        fn()
    print('ready', flush=True)
    for line in sys.stdin:
        label, calls = json.loads(line)
        print(json.dumps(timed(fns[label], calls)), flush=True)
else:  # rounds mode: the best of `reps` samples per case
    reps, fwd, min_sample = int(sys.argv[6]), sys.argv[7] == 'fwd', float(sys.argv[8])
    out = {}
    for label, fn in fns.items():
        if fwd or not label.endswith(' [fwd]'):
            calls = max(1, int(min_sample / max(timed(fn, 1), 1e-9)))
            out[label] = min(timed(fn, calls) for _ in range(reps))
    print(json.dumps(out))
'''


def _ask(proc: subprocess.Popen, label: str, calls: int) -> float:
    proc.stdin.write(json.dumps([label, calls]) + '\n')
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())


def paired(args: argparse.Namespace, cases: str) -> dict:
    """Per case, ``args.rounds * args.pairs`` pairs (A time, B time) taken back to back."""
    labels = [c[0] for c in json.loads(cases)]
    if args.fwd:
        labels = [lab for c in labels for lab in (c, c + ' [fwd]')]
    raw = {lab: [] for lab in labels}
    for r in range(args.rounds):
        roots = {'A': args.baseline, 'B': args.candidate}
        procs = {tag: subprocess.Popen(
            [sys.executable, '-c', CHILD, str(root.resolve()), str(args.threads),
             'pure' if args.pure else 'kernel', cases, 'serve'], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True) for tag, root in roots.items()}
        for proc in procs.values():
            assert proc.stdout.readline().strip() == 'ready'
        calls = {lab: max(1, int(args.min_sample / max(_ask(procs['A'], lab, 1), 1e-9)))
                 for lab in labels}
        for p in range(args.pairs):
            for lab in labels:
                order = ('A', 'B') if p % 2 == 0 else ('B', 'A')
                t = {tag: _ask(procs[tag], lab, calls[lab]) for tag in order}
                raw[lab].append((t['A'], t['B']))
        for proc in procs.values():
            proc.stdin.close()
            proc.wait()
        print(f'round {r + 1}/{args.rounds} done', file=sys.stderr, flush=True)
    return raw


def _paired_summary(raw: dict) -> list:
    print('| case | A s (median) | B s (median) | B/A per pair: median | quartiles |\n'
          '|---|---|---|---|---|')
    rows = []
    for lab, pairs in raw.items():
        ratios = sorted(b / a for a, b in pairs)
        q1, med, q3 = statistics.quantiles(ratios, n=4)
        a = statistics.median(p[0] for p in pairs)
        b = statistics.median(p[1] for p in pairs)
        rows.append(dict(case=lab, a=a, b=b, ratio=med, q1=q1, q3=q3, pairs=len(pairs)))
        print(f'| {lab} | {a:.4f} | {b:.4f} | {med:.3f} | {q1:.3f}-{q3:.3f} |')
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('baseline', type=Path, help='folder that contains the baseline lcn_mm')
    ap.add_argument('candidate', type=Path, help='folder that contains the candidate lcn_mm')
    ap.add_argument('--rounds', type=int, default=5)
    ap.add_argument('--reps', type=int, default=3, help='timed steps per process (min taken)')
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--pure', action='store_true', help='time the pure-PyTorch path')
    ap.add_argument('--cases', choices=sorted(CASE_SETS), default='issue14')
    ap.add_argument('--match', default='', help='only the cases whose label contains this')
    ap.add_argument('--fwd', action='store_true', help='also time the no-grad forward pass')
    ap.add_argument('--min-sample', type=float, default=0.0,
                    help='seconds a timed sample lasts at least (steps repeated within it)')
    ap.add_argument('--pairs', type=int, default=0,
                    help='paired mode: samples of A and B back to back, this many per round')
    ap.add_argument('--out', type=Path)
    args = ap.parse_args()
    cases = json.dumps([c for c in CASE_SETS[args.cases] if args.match in c[0]])
    if args.pairs:
        raw = paired(args, cases)
        rows = _paired_summary(raw)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(dict(
                command=' '.join(sys.argv), threads=args.threads, mode='paired',
                path='pure' if args.pure else 'cpu_kernel', cases=args.cases,
                match=args.match, rounds=args.rounds, pairs=args.pairs,
                min_sample=args.min_sample, torch=torch.__version__, raw=raw, summary=rows),
                indent=1))
        return
    raw = {'A': [], 'B': []}
    for r in range(args.rounds):
        for tag, root in (('A', args.baseline), ('B', args.candidate)):
            res = subprocess.run([sys.executable, '-c', CHILD, str(root.resolve()),
                                  str(args.threads), 'pure' if args.pure else 'kernel', cases,
                                  'rounds', str(args.reps), 'fwd' if args.fwd else 'fwd_bwd',
                                  str(args.min_sample)],
                                 capture_output=True, text=True, check=True)
            raw[tag].append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(f'round {r + 1}/{args.rounds} done', file=sys.stderr, flush=True)
    print('| case | A s (median) | B s (median) | B/A |\n|---|---|---|---|')
    rows = []
    for label in raw['A'][0]:
        a = statistics.median(t[label] for t in raw['A'])
        b = statistics.median(t[label] for t in raw['B'])
        rows.append(dict(case=label, a=a, b=b, ratio=b / a))
        print(f'| {label} | {a:.4f} | {b:.4f} | {b / a:.3f} |')
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(dict(command=' '.join(sys.argv), threads=args.threads,
                                            path='pure' if args.pure else 'cpu_kernel',
                                            cases=args.cases, match=args.match, rounds=args.rounds,
                                            reps=args.reps, min_sample=args.min_sample,
                                            torch=torch.__version__, raw=raw, summary=rows),
                                       indent=1))


if __name__ == '__main__':
    main()
