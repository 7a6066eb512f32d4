"""BN/GN checkpoints load into LCN layers through upstream's own ``Pretrained`` and load paths."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mmengine.registry import MODELS, DefaultScope
from mmengine.runner.checkpoint import load_state_dict
from torch import nn

import lcn_mm


def _resnet(norm_cfg: dict, **kwargs) -> nn.Module:
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(dict(type='ResNet', depth=50, norm_cfg=norm_cfg, **kwargs))


def _randomize(model: nn.Module) -> dict:
    """Non-default norm weights and BN statistics, so a skipped load would show."""
    gen = torch.Generator().manual_seed(0)
    state = model.state_dict()
    for key, value in state.items():
        if value.is_floating_point():
            state[key] = torch.randn(value.shape, generator=gen).abs() + 0.1
    model.load_state_dict(state)
    return model.state_dict()


@pytest.mark.parametrize('src_norm', [dict(type='BN'), dict(type='GN', num_groups=32)])
def test_pretrained_init_fills_every_lcn_weight_and_bias(src_norm: dict, tmp_path: Path,
                                                         caplog) -> None:
    """A BN (or GN) ResNet-50 checkpoint through ``init_cfg=dict(type='Pretrained')``, the
    README's path: every LCN weight/bias equals the source norm's, no key is reported."""
    src = _resnet(src_norm)
    src_state = _randomize(src)
    ckpt = tmp_path / 'resnet50.pth'
    torch.save({'state_dict': src_state}, ckpt)
    lcn = _resnet(dict(type='LCN'), init_cfg=dict(type='Pretrained', checkpoint=str(ckpt)))
    lcn.init_weights()
    src_norms = {n: m for n, m in src.named_modules()
                 if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))}
    lcn_norms = {n: m for n, m in lcn.named_modules() if isinstance(m, lcn_mm.LCN)}
    assert len(lcn_norms) == len(src_norms) == 53
    abbr = 'bn' if src_norm['type'] == 'BN' else 'gn'
    for name, layer in lcn_norms.items():
        parts = name.split('.')
        parts[-1] = parts[-1].replace('lcn', abbr, 1)
        source = src_norms['.'.join(parts)]
        assert torch.equal(layer.weight, source.weight), name
        assert torch.equal(layer.bias, source.bias), name
    convs = [n for n, m in lcn.named_modules() if isinstance(m, nn.Conv2d)]
    assert torch.equal(lcn.get_submodule(convs[5]).weight, src.get_submodule(convs[5]).weight)


def test_no_missing_or_unexpected_keys_and_lcn_checkpoints_win() -> None:
    src_state = _randomize(_resnet(dict(type='BN')))
    lcn = _resnet(dict(type='LCN'))
    missing, unexpected = [], []
    result = lcn.load_state_dict(src_state, strict=False)
    missing, unexpected = result.missing_keys, result.unexpected_keys
    assert not missing and not unexpected  # BN statistics dropped, weights taken
    own = {k: v + 1 for k, v in lcn.state_dict().items()}
    both = dict(src_state, **own)  # an LCN checkpoint that also has BN keys: own names win
    load_state_dict(lcn, both, strict=False)
    assert torch.equal(lcn.lcn1.weight, own['lcn1.weight'])


def test_a_real_bn_sibling_keeps_its_keys() -> None:
    """A module with both a BN ``bn1`` and an LCN ``lcn1``: bn1's keys stay bn1's."""
    parent = nn.Module()
    parent.bn1 = nn.BatchNorm2d(4)
    parent.lcn1 = lcn_mm.LCN(4, num_groups=2)
    state = {'bn1.weight': torch.full((4,), 3.0), 'bn1.bias': torch.zeros(4),
             'bn1.running_mean': torch.zeros(4), 'bn1.running_var': torch.ones(4),
             'bn1.num_batches_tracked': torch.tensor(0)}
    result = parent.load_state_dict(state, strict=False)
    assert torch.equal(parent.bn1.weight, torch.full((4,), 3.0))
    assert torch.equal(parent.lcn1.weight, torch.ones(4))
    assert set(result.missing_keys) == {'lcn1.weight', 'lcn1.bias'}
