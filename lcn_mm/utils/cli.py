"""Shared pieces of ``tools/train.py`` and ``tools/test.py`` (kept here so the tools stay thin).

The tools accept mmdet and mmseg configs alike; what differs per codebase is chosen by the
config's ``default_scope``.
"""
from __future__ import annotations

import argparse
import importlib

from mmengine.config import Config, DictAction
from mmengine.config.utils import _get_external_cfg_base_path, _get_package_and_cfg_path
from mmengine.logging import print_log
from mmengine.utils import get_installed_path
from torch import nn

from .amp import amp_optim_wrapper_type
from .errors import UserInputError, load_config_checked
from .norm_swap import norm_cfg_from_args, norm_layer_summary, swap_norms

__all__ = ['SUPPORTED_SCOPES', 'load_config', 'add_norm_args', 'apply_norm_args', 'setup_scope',
           'log_norm_summary', 'apply_amp', 'use_atomic_checkpoints', 'build_runner']

#: default_scope -> package whose registries the Runner builds from.
SUPPORTED_SCOPES = {'mmdet': 'mmdet', 'mmseg': 'mmseg'}


def load_config(path: str) -> Config:
    """``Config.fromfile`` that also takes upstream paths such as ``mmdet::gn/x.py``.

    The ``pkg::`` form resolves inside the installed package (``<pkg>/.mim/configs``), as
    ``_base_`` does, so ``--norm`` can run upstream configs without copying them.
    A missing or malformed file raises :class:`~lcn_mm.utils.errors.UserInputError`.
    """
    def load(path: str) -> Config:
        if '::' in path:
            package, rel_path = _get_package_and_cfg_path(path)
            path = _get_external_cfg_base_path(get_installed_path(package), rel_path)
        return Config.fromfile(path)

    return load_config_checked(path, load)


def add_norm_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--norm``, ``--norm-cfg`` and ``--norm-all`` (the one-flag norm switch)."""
    parser.add_argument(
        '--norm', metavar='TYPE',
        help='replace every 2-D norm of the model (BN, SyncBN, GN, ...) with this registered '
        'norm, e.g. LCN (defaults: lcn_mm.utils.NORM_PRESETS)')
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
        return []
    norm_cfg = norm_cfg_from_args(args.norm, args.norm_cfg)
    changes = swap_norms(cfg, norm_cfg, add_missing=args.norm_all)
    lines = [f'--norm {norm_cfg}: {len(changes)} changes'] + [f'  {c}' for c in changes]
    if cfg.get('load_from'):
        lines.append(f'WARNING: load_from={cfg.load_from} was saved with the old norms; '
                     'convert it with tools/model_converters/norm2lcn.py or its norm '
                     'weights will not load')
    return lines


def setup_scope(cfg: Config) -> str:
    """Check the config's ``default_scope`` and do that codebase's pre-Runner setup."""
    scope = cfg.get('default_scope')
    if scope not in SUPPORTED_SCOPES:
        raise SystemExit(f'{cfg.filename}: default_scope={scope!r}; these tools run '
                         f'{sorted(SUPPORTED_SCOPES)} configs')
    importlib.import_module(SUPPORTED_SCOPES[scope])
    if scope == 'mmdet':  # what mmdet's tools/train.py and test.py do first
        from mmdet.utils import setup_cache_size_limit_of_dynamo
        setup_cache_size_limit_of_dynamo()
    return scope


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
