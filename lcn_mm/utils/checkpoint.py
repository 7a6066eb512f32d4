"""Turn BN/GN checkpoints into LCN ones, offline or while loading a pretrained backbone.

LCN has the same per-channel ``weight``/``bias`` as BN and GN; only the module names differ,
because mmcv names norm attributes after ``_abbr_`` (``bn1``/``gn1`` -> ``lcn1``,
``ConvModule.bn``/``.gn`` -> ``.lcn``). BN running statistics have no LCN counterpart and are
dropped. Sequential-indexed norms (ResNet ``downsample.1``) keep their names.

Importing this module registers the ``'LCNPretrained'`` weight initializer, a drop-in for
mmengine's ``'Pretrained'`` that applies the renaming on the fly, so configs can keep pointing
at the original GN checkpoint (``open-mmlab://detectron/resnet50_gn``).
"""
from __future__ import annotations

import re
from collections import OrderedDict
from typing import Iterable, Mapping, NamedTuple

from mmengine.logging import print_log
from mmengine.model.weight_init import PretrainedInit, update_init_info
from mmengine.registry import WEIGHT_INITIALIZERS
from mmengine.runner.checkpoint import (_load_checkpoint, _load_checkpoint_with_prefix,
                                        load_state_dict)

__all__ = ['ConvertedStateDict', 'convert_state_dict', 'LCNPretrainedInit']

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


@WEIGHT_INITIALIZERS.register_module(name='LCNPretrained')
class LCNPretrainedInit(PretrainedInit):
    """``Pretrained`` init that loads a BN/GN checkpoint into a model whose norms are LCN.

    mmengine's ``Pretrained`` loads non-strictly and only logs mismatches, so loading a GN
    checkpoint into an LCN backbone would silently skip every norm; this renames first.

    Args:
        checkpoint: path or URL (``open-mmlab://...``) of the checkpoint.
        prefix: load only the sub-module with this prefix (e.g. ``'backbone.'``).
        map_location: where to map the tensors.
    """

    def __call__(self, module) -> None:
        if self.prefix is None:
            ckpt = _load_checkpoint(self.checkpoint, map_location=self.map_location,
                                    logger='current')
            state_dict = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else ckpt
            state_dict = OrderedDict(
                (re.sub(r'^module\.', '', k), v) for k, v in state_dict.items())
        else:
            state_dict = _load_checkpoint_with_prefix(self.prefix, self.checkpoint,
                                                      map_location=self.map_location)
        converted = convert_state_dict(state_dict)
        print_log(f'load model from: {self.checkpoint} with {len(converted.renamed)} norm keys '
                  f'renamed to lcn and {len(converted.dropped)} BN statistics dropped',
                  logger='current')
        load_state_dict(module, converted.state_dict, strict=False, logger='current')
        if hasattr(module, '_params_init_info'):
            update_init_info(module, init_info=self._get_init_info())
