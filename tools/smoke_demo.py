#!/usr/bin/env python
"""Smoke demo: train a small Mask R-CNN with LCN in backbone, neck and heads for a few steps.

Runs on CPU in well under a minute. The model is mmdet's Mask R-CNN R50-FPN config shrunk to
ResNet-18 with narrow FPN/heads, randomly initialised (no pretrained weights, no network).
Every norm layer (backbone, FPN, the 4-conv bbox head and the mask head) is built from
``norm_cfg=dict(type='LCN', ...)``. The input is one fixed synthetic batch from
``mmdet.testing.demo_mm_inputs`` (random images, boxes and masks), so the printed losses
should go down as the model fits it (the script exits with an error if they do not). This only
shows that the pieces work together; it says nothing about accuracy.

Usage::

    python tools/smoke_demo.py [--iters 8] [--norm LCN|GN|BN] [--window-size 7] [--num-groups 8]
"""
import argparse
import sys
import time
import warnings
from typing import Dict, List

import torch


def parse_args(argv: List[str]) -> argparse.Namespace:
    """Parse command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--iters', type=int, default=8, help='training iterations')
    parser.add_argument('--norm', default='LCN', choices=['LCN', 'GN', 'BN'],
                        help='norm layer type (GN/BN for comparison)')
    parser.add_argument('--num-groups', type=int, default=8, help='LCN/GN groups')
    parser.add_argument('--window-size', type=int, default=7, help='LCN window (pixels)')
    parser.add_argument('--batch-size', type=int, default=2)
    parser.add_argument('--image-size', type=int, default=128)
    parser.add_argument('--lr', type=float, default=0.005)
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args(argv)


def norm_cfg_from_args(args: argparse.Namespace) -> Dict:
    """The ``norm_cfg`` dict used everywhere in the model."""
    if args.norm == 'LCN':
        return dict(type='LCN', num_groups=args.num_groups, window_size=args.window_size,
                    requires_grad=True)
    if args.norm == 'GN':
        return dict(type='GN', num_groups=args.num_groups, requires_grad=True)
    return dict(type='BN', requires_grad=True)


def build_model_cfg(norm_cfg: Dict, num_classes: int = 3):
    """mmdet Mask R-CNN R50-FPN, shrunk to R18 / 32-channel FPN, ``norm_cfg`` everywhere."""
    from mmengine.hub import get_config
    model = get_config('mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py').model
    model.backbone.update(depth=18, norm_cfg=norm_cfg, norm_eval=False, frozen_stages=-1,
                          init_cfg=None)
    model.neck.update(in_channels=[64, 128, 256, 512], out_channels=32, norm_cfg=norm_cfg)
    model.rpn_head.update(in_channels=32, feat_channels=32)  # RPNHead has no norm layer
    roi = model.roi_head
    roi.bbox_roi_extractor.out_channels = 32
    # As in mmdet's gn/ configs: the default Shared2FCBBoxHead has no convs, hence no norm.
    roi.bbox_head.update(type='Shared4Conv1FCBBoxHead', in_channels=32, conv_out_channels=32,
                         fc_out_channels=64, num_classes=num_classes, norm_cfg=norm_cfg)
    roi.mask_roi_extractor.out_channels = 32
    roi.mask_head.update(in_channels=32, conv_out_channels=32, num_classes=num_classes,
                         norm_cfg=norm_cfg)
    return model


def _scalar(value) -> float:
    """A log value (tensor or number) as a Python float."""
    return float(value.detach()) if torch.is_tensor(value) else float(value)


def count_norm_layers(model: torch.nn.Module, norm_type: str) -> int:
    """Count modules whose class is the registered ``norm_type``."""
    from mmengine.registry import MODELS
    cls = MODELS.get(norm_type)
    return sum(isinstance(m, cls) for m in model.modules())


def main(argv: List[str]) -> int:
    """Build the model, train ``--iters`` steps on one synthetic batch, print the losses."""
    args = parse_args(argv)
    # Keep the output to the losses: no per-parameter init log, no library deprecation noise.
    warnings.filterwarnings('ignore', category=DeprecationWarning)
    warnings.filterwarnings('ignore', category=FutureWarning)
    from mmengine.logging import MMLogger
    if not MMLogger.check_instance_created('lcn_mm_smoke_demo'):
        MMLogger.get_instance('lcn_mm_smoke_demo', log_level='WARNING')
    import lcn_mm  # noqa: F401  (registers 'LCN'; applies lcn_mm.compat)
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    from mmdet.utils import register_all_modules
    from mmengine.optim import OptimWrapper
    from mmengine.registry import DefaultScope

    register_all_modules(init_default_scope=False)
    torch.manual_seed(args.seed)
    norm_cfg = norm_cfg_from_args(args)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(build_model_cfg(norm_cfg))
        model.init_weights()
        model.train()
        n_norm = count_norm_layers(model, args.norm)
        n_params = sum(p.numel() for p in model.parameters())
        print(f'Mask R-CNN R18-FPN, norm_cfg={norm_cfg}: {n_norm} {args.norm} layers, '
              f'{n_params / 1e6:.2f} M parameters')
        if n_norm == 0:
            print(f'ERROR: no {args.norm} layer was built', file=sys.stderr)
            return 1
        s = args.image_size
        batch = demo_mm_inputs(batch_size=args.batch_size, image_shapes=(3, s, s),
                               num_items=[3] * args.batch_size, num_classes=3, with_mask=True)
        optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9,
                                             weight_decay=1e-4))
        first = last = None
        for it in range(1, args.iters + 1):
            t0 = time.perf_counter()
            log_vars = model.train_step(batch, optim)
            dt = time.perf_counter() - t0
            loss = _scalar(log_vars['loss'])
            if loss != loss or abs(loss) == float('inf'):
                print(f'ERROR: non-finite loss at iteration {it}: {log_vars}', file=sys.stderr)
                return 1
            first = loss if first is None else first
            last = loss
            parts = '  '.join(f'{k}={_scalar(v):.4f}' for k, v in log_vars.items() if k != 'loss')
            print(f'iter {it:3d}/{args.iters}  loss={loss:.4f}  {parts}  ({dt:.2f} s)',
                  flush=True)
    print(f'done: loss {first:.4f} -> {last:.4f} over {args.iters} iterations')
    if args.iters > 1 and not last < first:
        print('ERROR: the loss did not go down on a fixed batch', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
