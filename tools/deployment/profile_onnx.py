"""Where ONNX Runtime spends its time in an exported model: per-op-type totals.

    python tools/deployment/profile_onnx.py MODEL.onnx --shape H W [--threads 2 --reps 10]

Runs the model on a random (1, 3, H, W) input with ONNX Runtime's profiler on and prints the
share of kernel time per ONNX op type (which says whether LCN's box sums or its full-tensor
elementwise passes dominate, next to the convolutions).
"""
from __future__ import annotations

import argparse
import collections
import json

import numpy as np
import onnxruntime as ort


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('model')
    ap.add_argument('--shape', type=int, nargs=2, required=True)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--reps', type=int, default=10)
    ap.add_argument('--by-shape', action='store_true',
                    help='per (op type, output dtype and shape): which map sizes cost the time')
    args = ap.parse_args()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.enable_profiling = True
    session = ort.InferenceSession(args.model, opts, providers=['CPUExecutionProvider'])
    x = np.random.default_rng(0).standard_normal((1, 3, *args.shape), dtype=np.float32)
    feed = {session.get_inputs()[0].name: x}
    for _ in range(args.reps):
        session.run(None, feed)
    with open(session.end_profiling()) as f:
        events = json.load(f)
    totals: collections.Counter = collections.Counter()
    for e in events:
        if e.get('cat') == 'Node' and e['name'].endswith('_kernel_time'):
            key = e['args']['op_name']
            if args.by_shape:
                out = e['args'].get('output_type_shape') or [{}]
                key += ' ' + ' '.join(f'{t}{s}' for t, s in out[0].items())
            totals[key] += e['dur']
    total = sum(totals.values())
    what = 'op type and output' if args.by_shape else 'op type'
    print(f'{args.model}: kernel time per {what}, {args.reps} runs, {args.threads} threads')
    for op, us in totals.most_common(30 if args.by_shape else 15):
        print(f'{op:24s} {us / args.reps / 1e3:8.1f} ms/run  {100 * us / total:5.1f} %')


if __name__ == '__main__':
    main()
