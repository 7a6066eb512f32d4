#!/usr/bin/env python
"""Sliding-window inference of a ResNet cut with LCN on a huge scene, equal to whole-image.

Tiles of ``--tile`` pixels are run with a margin of the network's receptive context (measured
with :func:`lcn_mm.apis.tiled.receptive_context`) and their cores stitched, so the features
equal those of one whole-image pass while memory depends only on the tile. ``--check`` also runs
the whole image and prints the largest difference (use ``--crop`` on small machines).

    python tools/analysis_tools/tiled_inference.py \\
        ../shared/data/landsat5-nebraska/nebraska_landsat5_with_nodata_wgs84.tif \\
        --tile 512 --out work_dirs/landsat_feat.npy
    python tools/analysis_tools/tiled_inference.py scene.tif --crop 1024 1024 --check \\
        --norm GN   # GN: refused

Random weights (``--checkpoint`` loads a backbone state dict saved from :class:`ResNetCut`).
"""
import argparse
import math
import sys
import time

import numpy as np
import torch
from huge_image import build_backbone, load_scene  # tools/analysis_tools/huge_image.py

from lcn_mm.apis.checkpoint import check_checkpoint
from lcn_mm.apis.errors import UserInputError, run_cli
from lcn_mm.apis.tiled import receptive_context, tiled_inference


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('image', help='GeoTIFF/TIFF/PNG/JPEG scene (1 band repeated to 3)')
    p.add_argument('--tile', type=int, default=512, help='core tile size (input pixels)')
    p.add_argument('--norm', default='LCN', choices=['LCN', 'GN'])
    p.add_argument('--stages', type=int, default=1)
    p.add_argument('--width', type=int, default=32)
    p.add_argument('--window', type=int, default=31, help='LCN window (feature pixels)')
    p.add_argument('--groups', type=int, default=8)
    p.add_argument('--checkpoint', help='state dict of the ResNetCut backbone')
    p.add_argument('--crop', type=int, nargs=2, metavar=('H', 'W'),
                   help='use only the top-left H x W pixels')
    p.add_argument('--check', action='store_true', help='compare with whole-image inference')
    p.add_argument('--out', help='save the stitched features as .npy')
    p.add_argument('--debug', action='store_true')
    return p.parse_args()


def main() -> None:
    args = parse_args()
    x = load_scene(args.image)
    if args.crop:
        x = x[:, :, :args.crop[0], :args.crop[1]].contiguous()
    model = build_backbone(args.norm, num_stages=args.stages, width=args.width,
                           window=args.window, groups=args.groups)
    if args.checkpoint:
        model.load_state_dict(check_checkpoint(args.checkpoint, model)['state_dict']
                              if 'state_dict' in torch.load(args.checkpoint, mmap=True,
                                                            weights_only=False)
                              else check_checkpoint(args.checkpoint, model))
    context, stride = receptive_context(model, size=max(64, 2 * args.tile // 64 * 32))
    if not math.isfinite(context):
        raise UserInputError(
            f'--norm {args.norm}: the network normalises over the whole map, so tiles cannot '
            'equal whole-image inference; use LCN (local windows)')
    if args.tile % stride:
        raise UserInputError(f'--tile must be a multiple of the output stride {stride}')
    print(f'image {tuple(x.shape)}, tile {args.tile}, receptive context {context:g} px '
          f'(margin {math.ceil(context / stride) * stride}), output stride {stride}')
    start = time.time()
    feats = tiled_inference(model, x, args.tile, context, stride,
                            progress=lambda d, t: print(f'\rtile {d}/{t}', end='',
                                                        file=sys.stderr))
    print(f'\ntiled: {tuple(feats.shape)} in {time.time() - start:.1f} s', file=sys.stderr)
    if args.check:
        with torch.no_grad():
            whole = model(x)
        diff = (feats - whole).abs().max().item()
        print(f'max |tiled - whole| = {diff:.3g} (max |whole| = {whole.abs().max().item():.3g})')
    if args.out:
        np.save(args.out, feats.numpy())
        print(f'saved {args.out}')


if __name__ == '__main__':
    run_cli(main)
