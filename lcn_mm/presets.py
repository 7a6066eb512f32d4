"""The one place where norm settings have names: ``--norm NAME`` and the demo's norm table.

``norm_cfg('LCN')`` is ``dict(type='LCN')``: the layer's own defaults (window 63, up to 32
groups, see :class:`lcn_mm.LCN`), so every path (``norm_cfg=dict(type='LCN')`` in a config,
``tools/train.py --norm LCN``, :func:`lcn_mm.apis.swap_norms`) builds the same layer.
"""
from __future__ import annotations

import copy
from typing import Any, Optional

__all__ = ['NORM_PRESETS', 'norm_cfg']

#: Norm name -> ``norm_cfg``. GN as in mmdet's ``gn-all`` configs (32 groups, trainable).
NORM_PRESETS: dict[str, dict] = {
    'LCN': dict(type='LCN'),
    'GN': dict(type='GN', num_groups=32, requires_grad=True),
    'BN': dict(type='BN', requires_grad=True),
    'SyncBN': dict(type='SyncBN', requires_grad=True),
    'IN': dict(type='IN', affine=True),
    'PN': dict(type='PN'),
    'LNCHW': dict(type='LNCHW'),
}


def norm_cfg(name: str, options: Optional[dict] = None, **overrides: Any) -> dict:
    """A fresh ``norm_cfg`` for ``name`` (a preset or any registered norm type).

    Args:
        name: ``'LCN'``, ``'GN'``, ... ; unknown names give ``dict(type=name)``.
        options, overrides: constructor arguments that extend or replace the preset's,
            e.g. ``norm_cfg('LCN', window_size=7, num_groups=16)``.
    """
    cfg = copy.deepcopy(NORM_PRESETS.get(name, dict(type=name)))
    cfg.update(options or {})
    cfg.update(overrides)
    cfg['type'] = name
    return cfg
