"""Convert a BN or GN checkpoint into an LCN one (offline; no model needed).

LCN has the same per-channel weight/bias as BN and GN, only the module names differ
(``bn1``/``gn1`` -> ``lcn1``, ``ConvModule.bn``/``.gn`` -> ``.lcn``); BN running statistics
are dropped. Works for backbone checkpoints and whole mmdet/mmseg models::

    python tools/model_converters/norm2lcn.py resnet50_gn.pth resnet50_lcn.pth

Models with LCN layers also load BN/GN checkpoints as they are (``Pretrained``, ``load_from``):
the layers take their BN/GN key names while loading (lcn_mm/layers/bn_gn_keys.py).
"""
import argparse

import torch

from lcn_mm.apis.checkpoint import convert_state_dict


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Rename BN/GN norm keys to LCN ones')
    parser.add_argument('src', help='BN or GN checkpoint (.pth)')
    parser.add_argument('dst', help='where to save the LCN checkpoint')
    parser.add_argument('--from', dest='src_abbrs', nargs='+', default=['bn', 'gn'],
                        help='norm name prefixes to rename (default: bn gn)')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    # Checkpoints saved by mmengine's Runner hold pickled objects besides tensors.
    ckpt = torch.load(args.src, map_location='cpu', weights_only=False)
    has_wrapper = isinstance(ckpt, dict) and 'state_dict' in ckpt
    state_dict = ckpt['state_dict'] if has_wrapper else ckpt
    converted = convert_state_dict(state_dict, src_abbrs=args.src_abbrs)
    # Only weights (and meta): optimizer and message-hub state belong to the old run.
    out = dict(state_dict=converted.state_dict)
    if has_wrapper and 'meta' in ckpt:
        out['meta'] = ckpt['meta']
    torch.save(out, args.dst)
    print(f'{args.src} -> {args.dst}: {len(converted.renamed)} keys renamed, '
          f'{len(converted.dropped)} BN statistics dropped, '
          f'{len(converted.state_dict)} keys kept')


if __name__ == '__main__':
    main()
