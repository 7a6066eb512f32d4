"""Train an mmdet or mmseg config with lcn_mm registered.

Same flags as mmdet's tools/train.py, plus the norm switch, e.g.::

    python tools/train.py configs/mmdet/mask-rcnn_r50_fpn_lcn-all_2x_coco.py
    python tools/train.py mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py --norm LCN

The codebase (mmdet or mmseg) is chosen by the config's ``default_scope``.
"""
import argparse
import os
import os.path as osp

from mmengine.config import DictAction

import lcn_mm  # noqa: F401  registers LCN/PN/LNCHW, even for configs without custom_imports
from lcn_mm.apis.cli import (add_norm_args, apply_amp, apply_norm_args, build_runner,
                             log_norm_summary, use_atomic_checkpoints)
from lcn_mm.apis.config import check_norm_types, ensure_custom_imports, load_config, setup_scope
from lcn_mm.apis.errors import run_cli
from lcn_mm.engine.dist import prepare_cpu_distributed


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train an mmdet/mmseg model (lcn_mm)')
    parser.add_argument('config', help='train config file path (or mmdet::/mmseg:: path)')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true',
                        help='enable automatic-mixed-precision training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='enable automatically scaling LR (configs with auto_scale_lr)')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from this checkpoint, or without a path from the latest one in the '
        'work dir')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings in the config, key=value pairs (e.g. '
        'train_dataloader.batch_size=4 model.backbone.frozen_stages=-1)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    parser.add_argument('--debug', action='store_true',
                        help='show tracebacks for bad input (also LCN_MM_DEBUG=1)')
    add_norm_args(parser)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main() -> None:
    args = parse_args()
    cfg = load_config(args.config)
    setup_scope(cfg)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    norm_changes = apply_norm_args(cfg, args)
    ensure_custom_imports(cfg)  # the config saved in the work dir reloads in upstream tools

    # work_dir priority: CLI > config > ./work_dirs/<config name>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])

    check_norm_types(cfg)
    use_atomic_checkpoints(cfg)  # a kill while saving never leaves a corrupt latest checkpoint
    if args.amp:  # float16 AmpOptimWrapper on GPU, bfloat16 CPUAmpOptimWrapper on CPU
        apply_amp(cfg)

    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise SystemExit('--auto-scale-lr needs auto_scale_lr.base_batch_size in the '
                             'config')
        cfg.auto_scale_lr.enable = True

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    # Before loading: a resume checkpoint must fit the model (mmengine only logs mismatches);
    # a load_from checkpoint (fine-tuning may load a subset) must at least be readable.
    if cfg.get('resume') or cfg.get('load_from'):
        cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [dict(
            type='CheckCheckpointHook', checkpoint=cfg.get('load_from'),
            strict=bool(cfg.get('resume')),
            what='resume checkpoint' if cfg.get('resume') else 'load_from checkpoint')]

    prepare_cpu_distributed(cfg, args.launcher)  # torchrun on CPU-only machines (gloo)
    runner = build_runner(cfg)
    log_norm_summary(runner.model, norm_changes)
    runner.train()


if __name__ == '__main__':
    run_cli(main)
