"""Rename BN/GN checkpoints to LCN key names offline, and check checkpoints before a run.

LCN has the same per-channel ``weight``/``bias`` as BN and GN; only the module names differ,
because mmcv names norm attributes after ``_abbr_`` (``bn1``/``gn1`` -> ``lcn1``,
``ConvModule.bn``/``.gn`` -> ``.lcn``). BN running statistics have no LCN counterpart and are
dropped. Sequential-indexed norms (ResNet ``downsample.1``) keep their names.

Loading needs no conversion (LCN layers take BN/GN key names, :mod:`lcn_mm.layers.bn_gn_keys`);
a converted file is for tools that compare key names, e.g. ``--resume`` checks.
"""
from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections import OrderedDict
from typing import Any, Iterable, Mapping, NamedTuple

from .errors import UserInputError, one_line

__all__ = ['ConvertedStateDict', 'convert_state_dict', 'check_checkpoint']

#: BN buffers that have no LCN counterpart.
RUNNING_STAT_SUFFIXES = ('.running_mean', '.running_var', '.num_batches_tracked')


class ConvertedStateDict(NamedTuple):
    """Result of :func:`convert_state_dict`: the new state dict and what changed."""

    state_dict: 'OrderedDict[str, object]'
    renamed: list[tuple[str, str]]
    dropped: list[str]


def convert_state_dict(state_dict: Mapping[str, object],
                       src_abbrs: Iterable[str] = ('bn', 'gn'),
                       dst_abbr: str = 'lcn') -> ConvertedStateDict:
    """Rename norm modules ``<src><k>`` to ``<dst><k>`` and drop BN running statistics.

    A key component is renamed only if it is exactly a source abbreviation plus an optional
    digit postfix (``bn``, ``gn3``), which is how ``build_norm_layer`` names norms; convs,
    ``downsample.1`` and anything else are left alone.

    Args:
        state_dict: mapping from parameter names to tensors (a model's ``state_dict``).
        src_abbrs: norm abbreviations to rename (``'bn'`` covers BN and SyncBN).
        dst_abbr: the target abbreviation (``LCN._abbr_``).
    """
    pattern = re.compile(r'^(?:%s)(\d*)$' % '|'.join(map(re.escape, src_abbrs)))
    out: OrderedDict[str, object] = OrderedDict()
    renamed: list[tuple[str, str]] = []
    dropped: list[str] = []
    for key, value in state_dict.items():
        if key.endswith(RUNNING_STAT_SUFFIXES):
            dropped.append(key)
            continue
        parts = [pattern.sub(dst_abbr + r'\1', part) for part in key.split('.')]
        new_key = '.'.join(parts)
        if new_key != key:
            renamed.append((key, new_key))
        out[new_key] = value
    return ConvertedStateDict(out, renamed, dropped)


def check_checkpoint(path: str, model: Any = None, what: str = 'checkpoint') -> dict:
    """Load ``path`` on CPU and check it fits ``model``; return the checkpoint dict.

    Raises UserInputError if the file is missing, unreadable (truncated, not a PyTorch file) or
    its ``state_dict`` shares no keys with the model, misses model keys or has tensors of the
    wrong shape. (mmengine loads non-strictly and only logs such mismatches.)
    """
    import torch
    if '://' in path:  # remote: leave it to mmengine
        return {}
    if not os.path.isfile(path):
        raise UserInputError(f'{what} not found: {path}')
    try:
        try:
            ckpt = torch.load(path, map_location='cpu', weights_only=False, mmap=True)
        except RuntimeError as exc:  # mmap needs the zip format; retry for legacy files
            if 'mmap' not in str(exc):
                raise
            ckpt = torch.load(path, map_location='cpu', weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile,
            ValueError, OSError, AttributeError, ImportError, IndexError) as exc:
        raise UserInputError(f'cannot read {what} {path} (truncated or not a PyTorch '
                             f'checkpoint): {type(exc).__name__}: {one_line(exc, 200)}'
                             ) from exc
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise UserInputError(f'{what} {path} has no state_dict (got {type(ckpt).__name__})')
    if model is None:
        return ckpt
    from mmengine.model import is_model_wrapper
    if is_model_wrapper(model):
        model = model.module
    state = {k[7:] if k.startswith('module.') else k: v for k, v in state.items()}
    expected = model.state_dict()
    common = set(state) & set(expected)
    missing = [k for k in expected if k not in state]
    wrong = [f'{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}' for k in sorted(common)
             if hasattr(state[k], 'shape') and tuple(state[k].shape) != tuple(expected[k].shape)]
    if not common:
        raise UserInputError(f'{what} {path} does not match the model: none of its '
                             f'{len(state)} keys is a model key (e.g. {next(iter(state), "-")!r} '
                             f'vs {next(iter(expected), "-")!r})')
    if missing or wrong:
        parts = []
        if missing:
            parts.append(f'{len(missing)} model keys missing (e.g. {", ".join(missing[:3])})')
        if wrong:
            parts.append(f'{len(wrong)} shape mismatches (e.g. {"; ".join(wrong[:3])})')
        raise UserInputError(f'{what} {path} does not match the model: ' + ', '.join(parts))
    return ckpt
