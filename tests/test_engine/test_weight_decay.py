"""LCN parameters get the same weight decay as GN's in our configs (issue #4, item 5).

mmengine's optimizer constructor recognises norms by ``isinstance`` (``GroupNorm`` among
them) for ``norm_decay_mult``; LCN subclasses ``nn.GroupNorm``, so it must be treated alike.
"""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from torch import nn

from lcn_mm.apis.checkpoint import convert_state_dict
from lcn_mm.testing import build_model

ROOT = Path(__file__).resolve().parents[2]
LCN_CONFIGS = sorted((ROOT / 'configs').rglob('*lcn-all*.py'))


def _sibling(path: Path) -> Path:
    return path.with_name(path.name.replace('lcn-all', 'gn-all'))


@pytest.mark.parametrize('path', LCN_CONFIGS, ids=[p.name for p in LCN_CONFIGS])
def test_optimizer_settings_equal_gn_sibling(path: Path) -> None:
    lcn, gn = Config.fromfile(path), Config.fromfile(_sibling(path))
    assert lcn.optim_wrapper.to_dict() == gn.optim_wrapper.to_dict()


def _decay_by_name(model: nn.Module, optim_cfg: dict, scope: str) -> dict[str, float]:
    """Weight decay that the built optimizer applies to each named parameter."""
    with DefaultScope.overwrite_default_scope(scope):
        wrapper = build_optim_wrapper(model, copy.deepcopy(optim_cfg))
    decay = {id(p): group['weight_decay'] for group in wrapper.optimizer.param_groups
             for p in group['params']}
    return {name: decay[id(p)] for name, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize('paramwise_cfg', [
    None,  # the configs' setting (as mmdet's GN configs: plain SGD decay everywhere)
    dict(norm_decay_mult=0.0, bias_decay_mult=0.0),  # a common override: must also match
])
def test_lcn_params_decay_like_gn(paramwise_cfg: dict | None) -> None:
    name = 'mask-rcnn_r50_fpn_lcn-all_2x_coco.py'
    lcn_cfg = Config.fromfile(ROOT / 'configs/mmdet' / name)
    gn_cfg = Config.fromfile(_sibling(ROOT / 'configs/mmdet' / name))
    optim_cfg = lcn_cfg.optim_wrapper.to_dict()
    if paramwise_cfg is not None:
        optim_cfg['paramwise_cfg'] = paramwise_cfg
    lcn_decay = _decay_by_name(build_model(lcn_cfg, init=False), optim_cfg, 'mmdet')
    gn_decay = _decay_by_name(build_model(gn_cfg, init=False), optim_cfg, 'mmdet')
    gn_decay = dict(convert_state_dict(gn_decay).state_dict)  # gn* -> lcn* names
    assert lcn_decay == gn_decay
    norm_weights = [v for k, v in lcn_decay.items() if '.lcn' in k or k.startswith('lcn')]
    assert norm_weights
    expected = 0.0 if paramwise_cfg else optim_cfg['optimizer']['weight_decay']
    assert set(norm_weights) == {expected}
    if paramwise_cfg:  # conv weights keep their decay: the exemption is norm-specific
        assert lcn_decay['backbone.layer4.0.conv1.weight'] == pytest.approx(1e-4)
