"""BN/GN checkpoints load into LCN layers as they are: ``bn1.weight`` fills ``lcn1.weight``.

mmcv names a norm after its class (``bn1``, ``gn1``, ``ConvModule.bn``), so a model whose norms
became LCN (``lcn1``) no longer matches the key names of the BN/GN checkpoints it starts from,
and ``Pretrained`` / ``load_from`` (non-strict) would silently skip every norm's affine
parameters. Each module that gets an LCN child gets a ``load_state_dict`` pre-hook that, when
the checkpoint has no keys of that child, takes the child's ``weight``/``bias`` from its BN/GN
name and drops the BN running statistics (LCN has none). Nothing else is renamed, so upstream
initialisers (``Pretrained``, mmseg's ``pretrained=``, ViT's ``pos_embed`` resizing) stay as
they are.
"""
from __future__ import annotations

import weakref

from torch import nn
from torch.nn.modules.module import register_module_module_registration_hook

__all__ = ['SOURCE_ABBRS', 'enable_bn_gn_keys']

#: Norm-name prefixes of the checkpoints LCN starts from (mmcv abbreviations of BN and GN).
SOURCE_ABBRS = ('bn', 'gn')
_AFFINE = ('weight', 'bias')
_BN_STATS = ('running_mean', 'running_var', 'num_batches_tracked')
_hooked: 'weakref.WeakSet[nn.Module]' = weakref.WeakSet()


def _aliases(name: str, abbr: str) -> list[str]:
    """``lcn1`` -> ``['bn1', 'gn1']``; names not made by ``build_norm_layer`` have none."""
    return [src + name[len(abbr):] for src in SOURCE_ABBRS] if name.startswith(abbr) else []


def _take_bn_gn_keys(parent: nn.Module, state_dict: dict, prefix: str, *_) -> None:
    for name, child in parent._modules.items():
        if not getattr(child, '_loads_bn_gn_keys', False):
            continue
        abbr = type(child)._abbr_
        own = f'{prefix}{name}.'
        for stat in _BN_STATS:  # a BN checkpoint of a norm named alike (``downsample.1``)
            state_dict.pop(own + stat, None)
        if any(f'{own}{p}' in state_dict for p in _AFFINE):
            continue  # an LCN checkpoint
        for alias in _aliases(name, abbr):
            if alias in parent._modules:  # a real BN/GN sibling owns those keys
                continue
            src = f'{prefix}{alias}.'
            keys = [k for k in state_dict if k.startswith(src) and '.' not in k[len(src):]]
            if any(k[len(src):] in _AFFINE for k in keys):
                for key in keys:
                    value = state_dict.pop(key)
                    if key[len(src):] in _AFFINE:
                        state_dict[own + key[len(src):]] = value
                break


def _on_register(parent: nn.Module, name: str, module: object) -> None:
    if getattr(module, '_loads_bn_gn_keys', False) and parent not in _hooked:
        _hooked.add(parent)
        parent.register_load_state_dict_pre_hook(_take_bn_gn_keys)


def enable_bn_gn_keys(cls: type) -> type:
    """Class decorator: this norm (and subclasses) load from BN/GN checkpoint key names."""
    cls._loads_bn_gn_keys = True
    return cls


register_module_module_registration_hook(_on_register)
