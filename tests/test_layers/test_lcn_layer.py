"""The LCN/PN/LNCHW modules and how the OpenMMLab stack treats them as norm layers."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import lcn_mm
from lcn_mm import LCN, LayerNormCHW, PositionalNorm, local_context_norm


def test_module_matches_functional_and_has_gn_shaped_parameters():
    layer = LCN(16, num_groups=4, window_size=(5, 3))
    assert layer.weight.shape == layer.bias.shape == (16,)
    nn.init.normal_(layer.weight)
    nn.init.normal_(layer.bias)
    x = torch.randn(2, 16, 9, 8)
    want = local_context_norm(x, 4, (5, 3), layer.weight, layer.bias)
    assert torch.equal(layer(x), want)
    assert layer.window_size == (5, 3) and layer.num_groups == 4
    assert 'window_size=(5, 3)' in repr(layer)


def test_channels_per_group_is_the_alternative_parametrization():
    assert LCN(16, channels_per_group=2).num_groups == 8
    assert LCN(16, num_groups=2).num_groups == 2


def test_gn_state_dict_loads_into_lcn():
    gn = nn.GroupNorm(8, 32)
    nn.init.normal_(gn.weight)
    lcn = LCN(32, num_groups=8)
    lcn.load_state_dict(gn.state_dict())
    assert torch.equal(lcn.weight, gn.weight)
    x = torch.randn(1, 32, 4, 4)
    torch.testing.assert_close(lcn(x), gn(x))  # a 63-pixel window covers a 4x4 map


@pytest.mark.parametrize('kwargs,exc,match', [
    (dict(num_groups=4, channels_per_group=4), ValueError, 'at most one of num_groups'),
    (dict(num_groups=5), ValueError, 'num_groups=5 must divide num_features=16'),
    (dict(channels_per_group=3), ValueError, 'channels_per_group=3 must divide'),
    (dict(num_groups=0), ValueError, 'num_groups must be a positive int'),
    (dict(num_groups=2.0), ValueError, 'num_groups must be a positive int'),
    (dict(num_groups=4, window_size=0), ValueError, 'window_size must be >= 1'),
    (dict(num_groups=4, window_size='7'), TypeError, 'window_size must be an int'),
    (dict(num_groups=4, window_size=(7, 7.0)), TypeError, 'window_size must be an int'),
    (dict(num_groups=4, eps=0), ValueError, 'eps must be a number > 0'),
    (dict(num_groups=4, eps=-1e-5), ValueError, 'eps must be a number > 0'),
])
def test_bad_construction_raises_naming_the_parameter(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        LCN(16, **kwargs)


def test_bad_num_features():
    with pytest.raises(ValueError, match='num_features must be a positive int'):
        LCN(0, num_groups=1)


def test_wrong_input_rank_and_channels():
    layer = LCN(8, num_groups=2, affine=False)
    with pytest.raises(ValueError, match='4-D input'):
        layer(torch.randn(2, 8, 5))
    with pytest.raises(ValueError, match='num_features=8 channels, got an input with 4'):
        layer(torch.randn(2, 4, 5, 5))


def test_check_finite_raises_instead_of_propagating():
    x = torch.randn(1, 8, 5, 5)
    x[0, 3, 2, 2] = float('nan')
    x[0, 1, 0, 0] = float('inf')
    assert torch.isnan(LCN(8, num_groups=2, window_size=3)(x)).any()  # default: propagate
    with pytest.raises(FloatingPointError, match='1 NaN and 1 Inf values'):
        LCN(8, num_groups=2, window_size=3, check_finite=True)(x)


def test_positional_norm_and_layer_norm_chw():
    x = torch.randn(2, 6, 5, 4, dtype=torch.float64)
    pn = PositionalNorm(6).double()
    mean, var = x.mean(1, keepdim=True), x.var(1, unbiased=False, keepdim=True)
    torch.testing.assert_close(pn(x), (x - mean) / torch.sqrt(var + 1e-5))
    ln = LayerNormCHW(6).double()
    torch.testing.assert_close(ln(x), nn.functional.layer_norm(x, x.shape[1:], eps=1e-5))


# --- OpenMMLab integration -------------------------------------------------------------------

mmcv_cnn = pytest.importorskip('mmcv.cnn')


@pytest.mark.parametrize('scope', [None, 'mmdet', 'mmseg'])
def test_build_norm_layer_in_every_scope(scope):
    from mmcv.cnn import build_norm_layer
    from mmengine.registry import DefaultScope
    if scope == 'mmdet':
        import mmdet.models  # noqa: F401
    elif scope == 'mmseg':
        import mmseg.models  # noqa: F401
    cfg = dict(type='LCN', num_groups=4, window_size=(7, 5))
    with DefaultScope.overwrite_default_scope(scope):
        name, layer = build_norm_layer(cfg, 16)
        pn_name, pn = build_norm_layer(dict(type='PN'), 16, postfix=1)
        ln_name, ln = build_norm_layer(dict(type='LNCHW'), 16)
    assert name == 'lcn' and isinstance(layer, LCN)
    assert layer.window_size == (7, 5) and layer.num_groups == 4 and layer.eps == 1e-5
    assert pn_name == 'pn1' and isinstance(pn, PositionalNorm)
    assert ln_name == 'ln' and isinstance(ln, LayerNormCHW)
    _, cpg_layer = build_norm_layer(dict(type='LCN', channels_per_group=2), 16)
    assert cpg_layer.num_groups == 8


def test_build_norm_layer_requires_grad_false():
    from mmcv.cnn import build_norm_layer
    _, layer = build_norm_layer(dict(type='LCN', num_groups=2, requires_grad=False), 8)
    assert all(not p.requires_grad for p in layer.parameters())


def test_build_norm_layer_bad_config_raises_at_build_time():
    from mmcv.cnn import build_norm_layer
    with pytest.raises(ValueError, match='num_groups=3 must divide num_features=8'):
        build_norm_layer(dict(type='LCN', num_groups=3), 8)


def test_is_norm_and_conv_module():
    from mmcv.cnn import ConvModule, is_norm
    for layer in (LCN(8, num_groups=2), PositionalNorm(8), LayerNormCHW(8)):
        assert is_norm(layer)
    conv = ConvModule(3, 8, 3, padding=1, norm_cfg=dict(type='LCN', num_groups=2, window_size=3))
    assert conv.norm_name == 'lcn' and isinstance(conv.lcn, LCN)
    assert conv.conv.bias is None  # the norm follows, so the conv drops its bias
    conv.init_weights()
    assert torch.equal(conv.lcn.weight, torch.ones(8))
    out = conv(torch.randn(2, 3, 10, 10))  # ReLU(inplace=True) right after LCN
    assert out.shape == (2, 8, 10, 10)
    out.sum().backward()
    assert conv.lcn.weight.grad is not None and torch.isfinite(conv.conv.weight.grad).all()


def test_norm_decay_mult_applies_to_lcn():
    from mmengine.optim import DefaultOptimWrapperConstructor
    model = nn.Sequential(nn.Conv2d(3, 8, 3), LCN(8, num_groups=2))
    constructor = DefaultOptimWrapperConstructor(
        dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1, weight_decay=1e-4)),
        dict(norm_decay_mult=0.0))
    optim = constructor(model).optimizer
    decay = {id(p): g['weight_decay'] for g in optim.param_groups for p in g['params']}
    assert decay[id(model[1].weight)] == 0.0 and decay[id(model[1].bias)] == 0.0
    assert decay[id(model[0].weight)] == 1e-4


def _resnet(**kwargs):
    from mmdet.models.backbones import ResNet
    return ResNet(depth=18, norm_cfg=dict(type='LCN', num_groups=8, window_size=7),
                  norm_eval=False, init_cfg=None, **kwargs)


def test_resnet_with_lcn_frozen_stages_and_zero_init_residual():
    model = _resnet(frozen_stages=1, zero_init_residual=True)
    model.init_weights()
    assert isinstance(model.lcn1, LCN)
    assert all(not p.requires_grad for p in model.lcn1.parameters())
    assert all(not p.requires_grad for p in model.layer1.parameters())
    assert all(p.requires_grad for p in model.layer2.parameters())
    model.train()
    assert not model.lcn1.training and model.layer2.training
    # zero_init_residual sets the last norm of each residual block to zero.
    for block in (model.layer2[0], model.layer3[1]):
        assert torch.equal(block.lcn2.weight, torch.zeros_like(block.lcn2.weight))
    outs = model(torch.randn(1, 3, 64, 64))
    outs[-1].sum().backward()
    assert model.layer4[0].conv1.weight.grad is not None


def test_registered_once_in_root_registry():
    from mmengine.registry import MODELS
    for name, cls in lcn_mm.registry.NORM_LAYERS_BY_NAME.items():
        assert MODELS.get(name) is cls
    assert MODELS.get('LN') is nn.LayerNorm  # mmcv's names untouched


@pytest.mark.parametrize('channels,groups', [(1, 1), (3, 3), (48, 24), (96, 32), (200, 25),
                                             (720, 30), (2048, 32)])
def test_default_groups_build_for_every_width(channels: int, groups: int) -> None:
    """``norm_cfg=dict(type='LCN')`` builds for any C: 32 groups as GN, else the largest
    divisor of C below 32, computed here by hand."""
    from mmcv.cnn import build_norm_layer
    name, layer = build_norm_layer(dict(type='LCN'), channels)
    assert name == 'lcn' and isinstance(layer, LCN)
    assert layer.num_groups == groups and channels % groups == 0
    assert tuple(layer.window_size) == (63, 63)
    assert layer(torch.randn(1, channels, 5, 4)).shape == (1, channels, 5, 4)
