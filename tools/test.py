"""Evaluate a checkpoint of an mmdet or mmseg config with lcn_mm registered.

    python tools/test.py configs/mmseg/pspnet_r50-d8_lcn-all_4xb2-80k_cityscapes-512x1024.py \\
        work_dirs/pspnet_r50-d8_lcn-all_4xb2-80k_cityscapes-512x1024/iter_80000.pth

``--norm`` rebuilds the model with swapped norms, for checkpoints trained with
``tools/train.py <config> --norm ...`` (pass the same flags).
"""
import argparse
import os
import os.path as osp

from mmengine.config import DictAction

import lcn_mm  # noqa: F401  registers LCN/PN/LNCHW, even for configs without custom_imports
from lcn_mm.apis.cli import add_norm_args, apply_norm_args, build_runner, log_norm_summary
from lcn_mm.apis.config import check_norm_types, ensure_custom_imports, load_config, setup_scope
from lcn_mm.apis.errors import run_cli
from lcn_mm.engine.dist import prepare_cpu_distributed


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test an mmdet/mmseg model (lcn_mm)')
    parser.add_argument('config', help='test config file path (or mmdet::/mmseg:: path)')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save the evaluation metrics')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings in the config, key=value pairs')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
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
    check_norm_types(cfg)

    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    # mmengine loads non-strictly and only logs mismatches: never evaluate random weights.
    cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [
        dict(type='CheckCheckpointHook', checkpoint=args.checkpoint, strict=True)]

    prepare_cpu_distributed(cfg, args.launcher)
    runner = build_runner(cfg)
    log_norm_summary(runner.model, norm_changes)
    runner.test()


if __name__ == '__main__':
    run_cli(main)
