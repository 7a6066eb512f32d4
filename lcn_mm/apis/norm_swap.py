"""Switch every norm layer of an existing mmdet/mmseg config to another norm, in place.

Why this is not a one-key ``--cfg-options``: a config's norms live in many places (backbone,
neck, every head, auxiliary heads in lists), config variables such as mmseg's top-level
``norm_cfg`` are already resolved into those dicts, some slots are *class defaults* that the
config never spells out (mmdet ``ResNet`` builds BN unless told otherwise), and BN-only
settings (``norm_eval=True``, ``momentum``, BN-named pretrained checkpoints) must change too.
:func:`swap_norms` walks ``cfg.model`` and handles all of these, returning what it changed.
"""
from __future__ import annotations

import copy
import inspect
from collections import Counter
from typing import Any, MutableMapping, Optional

from mmengine.registry import MODELS
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ['CONV_NORM_TYPES', 'swap_norms', 'norm_layer_summary']

#: Registered norm types that act on (N, C, H, W) maps and can be swapped for each other.
#: Token norms (``LN``, ``BN1d``, ``IN1d``) are left alone: LCN needs a spatial map.
CONV_NORM_TYPES = frozenset(
    {'BN', 'BN2d', 'SyncBN', 'MMSyncBN', 'GN', 'IN', 'IN2d', 'LCN', 'PN', 'LNCHW'})


def _type_name(norm_cfg: Any) -> Optional[str]:
    """Return the registry name of a norm cfg's type (``'mmdet.BN'`` -> ``'BN'``), or None."""
    if not isinstance(norm_cfg, dict):
        return None
    t = norm_cfg.get('type')
    return t.rsplit('.', 1)[-1] if isinstance(t, str) else None


def _lookup(type_: Any, scope: Optional[str]) -> Optional[type]:
    """Resolve a model cfg's ``type`` to its class in ``scope`` (None if not a model)."""
    if isinstance(type_, type):
        return type_
    if not isinstance(type_, str):
        return None
    key = type_ if '.' in type_ or scope in (None, 'mmengine') else f'{scope}.{type_}'
    try:
        return MODELS.get(key)
    except (KeyError, ImportError):
        return None


_NO_PARAM = object()


def _norm_cfg_default(cls: type) -> Any:
    """The default of ``norm_cfg`` in the first ``__init__`` of ``cls``'s MRO that declares it.

    Returns ``_NO_PARAM`` if no ``__init__`` takes ``norm_cfg``.
    """
    for klass in cls.__mro__:
        init = klass.__dict__.get('__init__')
        if init is None:
            continue
        try:
            param = inspect.signature(init).parameters.get('norm_cfg')
        except (TypeError, ValueError):
            continue
        if param is not None:
            return None if param.default is inspect.Parameter.empty else param.default
    return _NO_PARAM


def swap_norms(cfg: MutableMapping, norm_cfg: dict, add_missing: bool = False) -> list[str]:
    """Replace every 2-D norm in ``cfg['model']`` with ``norm_cfg``; return the changes.

    What is changed, in every (nested) model dict, lists included:

    * ``norm_cfg`` and ``*_norm_cfg`` dicts whose type is in :data:`CONV_NORM_TYPES` are
      replaced whole by a copy of ``norm_cfg`` (so BN keys like ``momentum`` or a frozen
      ``requires_grad=False`` do not leak into the new norm);
    * modules whose class builds a norm by default but whose config omits ``norm_cfg``
      (e.g. mmdet ``ResNet``, default BN) get ``norm_cfg`` set explicitly;
    * with ``add_missing``, modules that accept ``norm_cfg`` but have none (FPN, FCN mask
      head, mmseg heads without norm) get it too, as mmdet's ``gn-all`` configs do. Head
      layouts are not changed: e.g. ``Shared2FCBBoxHead`` has no conv to normalize;
    * ``norm_eval=True`` becomes False (it freezes BN statistics; other norms have none);
    * initialisers are left alone: LCN layers load BN/GN checkpoints under their BN/GN key
      names (:mod:`lcn_mm.layers.bn_gn_keys`), so ``Pretrained`` (and whatever an upstream
      ``init_weights`` does with it, e.g. ViT's ``pos_embed`` resizing) keeps working.

    Args:
        cfg: a config (``mmengine.Config`` or dict) with a ``model`` dict and, to resolve
            class defaults, a ``default_scope``.
        norm_cfg: the new norm, e.g. ``dict(type='LCN', num_groups=32, window_size=63)``.
        add_missing: also add norms to norm-less modules that accept ``norm_cfg``.

    Returns:
        One line per change, ``'<path>: <old> -> <new>'``, paths like
        ``model.roi_head.mask_head.norm_cfg``.
    """
    new_type = _type_name(norm_cfg)
    if new_type is None:
        raise ValueError(f'norm_cfg needs a string type, got {norm_cfg!r}')
    changes: list[str] = []

    def walk(node: Any, path: str, scope: Optional[str]) -> None:
        if isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f'{path}[{i}]', scope)
            return
        if not isinstance(node, MutableMapping):
            return
        scope = node.get('_scope_', scope)
        swapped_here = False
        for key in list(node.keys()):
            value = node[key]
            if key == 'norm_cfg' or key.endswith('_norm_cfg'):
                old = _type_name(value)
                if old in CONV_NORM_TYPES:
                    node[key] = copy.deepcopy(norm_cfg)
                    changes.append(f'{path}.{key}: {old} -> {new_type}')
                    swapped_here = True
            elif isinstance(value, (MutableMapping, list)):
                walk(value, f'{path}.{key}', scope)
        cls = _lookup(node.get('type'), scope) if 'type' in node else None
        if cls is not None and node.get('norm_cfg') is None:
            default = node.get('norm_cfg', _norm_cfg_default(cls))
            if _type_name(default) in CONV_NORM_TYPES:
                node['norm_cfg'] = copy.deepcopy(norm_cfg)
                changes.append(f'{path}.norm_cfg: {_type_name(default)} (class default) -> '
                               f'{new_type}')
                swapped_here = True
            elif add_missing and default is None:
                node['norm_cfg'] = copy.deepcopy(norm_cfg)
                changes.append(f'{path}.norm_cfg: None -> {new_type} (added)')
                swapped_here = True
        if swapped_here and node.get('norm_eval') is True:
            node['norm_eval'] = False
            changes.append(f'{path}.norm_eval: True -> False')

    walk(cfg['model'], 'model', cfg.get('default_scope'))
    return changes


def norm_layer_summary(model: nn.Module) -> Counter:
    """Count a built model's norm layers by class name (BN, GN and their subclasses, LN).

    Used to report and to check that a swap reached every layer.
    """
    counts: Counter = Counter()
    for module in model.modules():
        if isinstance(module, (_BatchNorm, nn.GroupNorm, nn.LayerNorm,
                               nn.modules.instancenorm._InstanceNorm)):
            counts[type(module).__name__] += 1
    return counts
