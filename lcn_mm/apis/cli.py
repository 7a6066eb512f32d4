"""Shared pieces of ``tools/train.py`` and ``tools/test.py`` (kept here so the tools stay thin).

The tools accept mmdet and mmseg configs alike; what differs per codebase is chosen by the
config's ``default_scope``.
"""
from __future__ import annotations

import argparse

from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from torch import nn

from ..engine.optim import amp_optim_wrapper_type
from ..presets import norm_cfg
from .config import model_norm_types
from .errors import UserInputError
from .norm_swap import CONV_NORM_TYPES, norm_layer_summary, swap_norms

__all__ = ['add_norm_args', 'apply_norm_args', 'log_norm_summary', 'apply_amp',
           'use_atomic_checkpoints', 'build_runner']


def add_norm_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--norm``, ``--norm-cfg`` and ``--norm-all`` (the one-flag norm switch)."""
    parser.add_argument(
        '--norm', metavar='TYPE',
        help='replace every 2-D norm of the model (BN, SyncBN, GN, ...) with this registered '
        'norm, e.g. LCN (defaults: lcn_mm.presets.NORM_PRESETS)')
    parser.add_argument(
        '--norm-cfg', nargs='+', action=DictAction, metavar='KEY=VALUE',
        help='arguments of the --norm layer, e.g. window_size="(31,31)" num_groups=16')
    parser.add_argument(
        '--norm-all', action='store_true',
        help='with --norm: also add the norm to modules that accept norm_cfg but have none '
        '(FPN, mask head), as mmdet\'s gn-all configs do')


def apply_norm_args(cfg: Config, args: argparse.Namespace) -> list[str]:
    """Apply ``--norm``/``--norm-cfg``/``--norm-all`` to ``cfg``; return report lines.

    Log them with :func:`log_norm_summary` once the Runner (and its log file) exists.
    """
    if not args.norm:
        if args.norm_cfg or args.norm_all:
            raise SystemExit('--norm-cfg and --norm-all need --norm TYPE')
        return _apply_top_level_norm(cfg)
    new_cfg = norm_cfg(args.norm, args.norm_cfg)
    changes = swap_norms(cfg, new_cfg, add_missing=args.norm_all)
    lines = [f'--norm {new_cfg}: {len(changes)} changes'] + [f'  {c}' for c in changes]
    return lines


def _apply_top_level_norm(cfg: Config) -> list[str]:
    """A child config's top-level ``norm_cfg`` (mmseg style) that the model never got.

    mmengine resolves a base config's variables when it reads the base, so ``norm_cfg =
    dict(type='LCN')`` in a child of an mmseg config changes the variable, not the model's
    SyncBN dicts. When the variable names a 2-D norm that no norm dict of the model uses,
    swap the model's norms to it, as the user meant.
    """
    top = cfg.get('norm_cfg')
    top_type = top.get('type') if isinstance(top, dict) else None
    if not isinstance(top_type, str) or top_type.rsplit('.', 1)[-1] not in CONV_NORM_TYPES:
        return []
    used = model_norm_types(cfg)
    if not used or top_type.rsplit('.', 1)[-1] in used:
        return []
    # mmengine marks the top-level dicts of a ``pkg::`` base with ``_scope_``; a norm layer
    # would get it as a keyword argument
    top = {key: value for key, value in dict(top).items() if key != '_scope_'}
    changes = swap_norms(cfg, top)
    return [f'top-level norm_cfg={top} is not in the model (base variables are resolved '
            f'when the base is read): applied it, {len(changes)} changes'] + [
                f'  {c}' for c in changes]


def log_norm_summary(model: nn.Module, norm_report: list[str]) -> None:
    """Log the norm swap and the built model's norm layers by type (its module-level check)."""
    for line in norm_report:
        print_log(line, logger='current')
    summary = ', '.join(f'{name}: {n}' for name, n in sorted(norm_layer_summary(model).items()))
    print_log(f'norm layers in the model: {summary or "none"}', logger='current')


def apply_amp(cfg: Config) -> None:
    """``--amp``: float16 ``AmpOptimWrapper`` on GPU, bfloat16 ``CPUAmpOptimWrapper`` on CPU."""
    if cfg.optim_wrapper.get('type', 'OptimWrapper') not in (
            'OptimWrapper', 'AmpOptimWrapper', 'CPUAmpOptimWrapper'):
        raise SystemExit(f'--amp needs an OptimWrapper, got {cfg.optim_wrapper.type}')
    cfg.optim_wrapper.type = amp_optim_wrapper_type()
    cfg.optim_wrapper.loss_scale = 'dynamic'  # ignored by CPUAmpOptimWrapper (bfloat16)


def use_atomic_checkpoints(cfg: Config) -> None:
    """Turn the config's ``CheckpointHook`` into ``AtomicCheckpointHook`` (same arguments)."""
    hook = cfg.get('default_hooks', {}).get('checkpoint')
    if hook is not None and hook.get('type') in ('CheckpointHook', 'mmengine.CheckpointHook'):
        hook.type = 'AtomicCheckpointHook'


def build_runner(cfg: Config):
    """Build the Runner; errors from building the model/datasets from the config are bad input.

    (A ``norm_cfg`` whose groups do not divide a layer's channels, a wrong argument name, ...).
    """
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    try:
        return Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    except (ValueError, TypeError, KeyError, AssertionError) as exc:
        msg = ' '.join(str(exc).split())
        raise UserInputError(f'cannot build the model/runner of {cfg.filename}: {msg}') from exc
