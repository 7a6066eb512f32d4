#!/usr/bin/env python
"""Peak memory of whole-image inference with LCN vs GN on huge inputs (CPU, no_grad).

Runs every case in a fresh subprocess and reports its peak RSS (``ru_maxrss``):

* ``net``: the first ``--stages`` stages of a ResNet-18 (stem and stage widths ``--width``,
  random weights) with LCN or GN, on the Landsat scene (4627x2846, band repeated to 3 channels)
  and on a synthetic 8192x8192x3 image;
* ``op``: the LCN op alone (fused kernel and pure-PyTorch path) vs ``F.group_norm`` on one
  tensor of ``--op-shape``: extra memory over the input, output included.

    python tools/analysis_tools/huge_image_inference.py  # the table in docs/reliability.md
    python tools/analysis_tools/huge_image_inference.py --images synthetic:4096 --cases net

``--worker`` runs one case in this process and prints it as JSON.
"""
import argparse
import json
import os
import platform
import sys

from huge_image import run_measured, worker  # tools/analysis_tools/huge_image.py

from lcn_mm.apis.errors import run_cli

LANDSAT = '../shared/data/landsat5-nebraska/nebraska_landsat5_with_nodata_wgs84.tif'


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--images', nargs='+', default=[LANDSAT, 'synthetic:8192'],
                   help='image files or synthetic:<size>')
    p.add_argument('--norms', nargs='+', default=['LCN', 'GN'], choices=['LCN', 'GN'])
    p.add_argument('--cases', nargs='+', default=['net', 'op'], choices=['net', 'op'])
    p.add_argument('--stages', type=int, default=1, help='ResNet stages after the stem')
    p.add_argument('--width', type=int, default=32, help='stem/stage-1 channels')
    p.add_argument('--window', type=int, default=63, help='LCN window (feature pixels)')
    p.add_argument('--groups', type=int, default=8)
    p.add_argument('--op-shape', type=int, nargs=4, default=[1, 32, 2048, 2048])
    p.add_argument('--worker', choices=['net', 'op'], help=argparse.SUPPRESS)
    p.add_argument('--norm', default='LCN', help=argparse.SUPPRESS)
    p.add_argument('--image', default='', help=argparse.SUPPRESS)
    p.add_argument('--json', help='also write the results to this file')
    p.add_argument('--debug', action='store_true')
    return p.parse_args()


def main() -> None:
    args = parse_args()
    common = ['--stages', args.stages, '--width', args.width, '--window', args.window,
              '--groups', args.groups, '--op-shape', *args.op_shape]
    if args.worker:
        res = worker(args.worker, args.norm, args.image, args.stages, args.width,
                     args.window, args.groups, tuple(args.op_shape))
        print(json.dumps(res), flush=True)
        return
    for image in args.images:  # fail early, with one line, on unreadable images
        if not image.startswith('synthetic:') and not os.path.isfile(image):
            from lcn_mm.apis.errors import UserInputError
            raise UserInputError(f'image not found: {image}')
    jobs = []
    if 'net' in args.cases:
        jobs += [('net', n, im, {}) for im in args.images for n in args.norms]
    if 'op' in args.cases:
        jobs += [('op', 'LCN', '', {}), ('op', 'LCN', '', {'LCN_MM_NATIVE': '0'}),
                 ('op', 'GN', '', {})]
    results = []
    print(f'# {platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}')
    for case, norm, image, env in jobs:
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            res = run_measured([__file__, '--worker', case, '--norm', norm, '--image', image,
                                *common])
        finally:
            for k, v in old.items():
                os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
        res.setdefault('case', case)
        res.setdefault('norm', norm)
        results.append(res)
        print(json.dumps(res), flush=True)
        if res.get('returncode'):
            print(f'error in {case} {norm} {image}: {res.get("error")}', file=sys.stderr)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=1)
    if any(r.get('returncode') for r in results):
        raise SystemExit(1)


if __name__ == '__main__':
    run_cli(main)
