"""``swap_norms`` reaches every norm slot of upstream configs and reports what it changed."""
from __future__ import annotations

import copy

import pytest
import torch
from mmengine.config import Config
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

import lcn_mm
from lcn_mm.apis.config import load_config
from lcn_mm.apis.norm_swap import norm_layer_summary, swap_norms
from lcn_mm.presets import NORM_PRESETS, norm_cfg
from lcn_mm.testing import build_model, demo_batch, limit_rois, loss_step

LCN_CFG = NORM_PRESETS['LCN']


def _old_norm_count(model: nn.Module) -> int:
    return sum(isinstance(m, (_BatchNorm, nn.GroupNorm)) for m in model.modules())


@pytest.mark.parametrize('upstream,groups', [
    ('mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py', 32),
    ('mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py', 32),  # GN head, frozen-BN backbone
    ('mmseg::pspnet/pspnet_r50-d8_4xb2-80k_cityscapes-512x1024.py', 32),
    # its 48-channel c1 bottleneck needs a group count dividing 48 (as GN would)
    ('mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb4-80k_ade20k-512x512.py', 16),
])
def test_swap_replaces_every_norm(upstream: str, groups: int) -> None:
    """Same number of norm layers as upstream, all of them LCN; nothing else changes."""
    cfg = load_config(upstream)
    reference = build_model(cfg, init=False)
    swapped_cfg = copy.deepcopy(cfg)
    changes = swap_norms(swapped_cfg, norm_cfg('LCN', num_groups=groups))
    model = build_model(swapped_cfg, init=False)
    assert norm_layer_summary(model) == {'LCN': _old_norm_count(reference)}
    assert any(c.startswith('model.backbone.norm_cfg: ') for c in changes)
    # Every LCN carries exactly the requested settings (no leaked BN keys such as momentum).
    for module in model.modules():
        if isinstance(module, lcn_mm.LCN):
            assert module.num_groups == groups and tuple(module.window_size) == (63, 63)
    # The parameter count only loses BN's (none: BN buffers are not parameters).
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(model) == count(reference)


def test_groups_must_divide_channels() -> None:
    """An explicit group count that does not divide a layer's channels fails at build, loudly;
    the default (no num_groups) builds DeepLabV3+'s 48-channel skip with 24 groups."""
    cfg = load_config('mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb4-80k_ade20k-512x512.py')
    explicit = copy.deepcopy(cfg)
    swap_norms(explicit, norm_cfg('LCN', num_groups=32))
    with pytest.raises(ValueError, match='num_groups=32 must divide num_features=48'):
        build_model(explicit, init=False)
    swap_norms(cfg, LCN_CFG)
    groups = {m.num_channels: m.num_groups for m in build_model(cfg, init=False).modules()
              if isinstance(m, lcn_mm.LCN)}
    assert groups[48] == 24 and groups[512] == 32 and groups[2048] == 32


def test_swap_mask_rcnn_reports_bn_specific_changes() -> None:
    cfg = load_config('mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py')
    changes = swap_norms(cfg, LCN_CFG)
    assert changes == [
        'model.backbone.norm_cfg: BN -> LCN',
        'model.backbone.norm_eval: True -> False',
    ]
    assert cfg.model.backbone.init_cfg.type == 'Pretrained'  # BN keys load into LCN as they are
    assert cfg.model.backbone.norm_cfg == LCN_CFG
    assert cfg.model.backbone.init_cfg.checkpoint == 'torchvision://resnet50'
    assert cfg.model.neck.get('norm_cfg') is None  # FPN had no norm upstream


def test_norm_all_adds_norms_like_gn_all_configs() -> None:
    """--norm-all gives FPN and the mask head norms, as mmdet's gn-all configs do."""
    cfg = load_config('mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py')
    changes = swap_norms(cfg, LCN_CFG, add_missing=True)
    assert 'model.neck.norm_cfg: None -> LCN (added)' in changes
    assert 'model.roi_head.mask_head.norm_cfg: None -> LCN (added)' in changes
    limit_rois(cfg)
    model = build_model(cfg, init=False)
    for part in (model.neck, model.roi_head.mask_head):
        assert any(isinstance(m, lcn_mm.LCN) for m in part.modules())
    assert set(norm_layer_summary(model)) == {'LCN'}
    assert torch.isfinite(loss_step(model, demo_batch(cfg, 64)))


def test_class_default_norm_is_swapped() -> None:
    """A module whose config omits norm_cfg still builds BN by default: that slot counts too."""
    cfg = Config(dict(default_scope='mmdet', model=dict(type='ResNet', depth=18)))
    assert swap_norms(cfg, LCN_CFG) == ['model.norm_cfg: BN (class default) -> LCN']
    assert set(norm_layer_summary(build_model(cfg, init=False))) == {'LCN'}


def test_bn_keys_do_not_leak_and_token_norms_stay() -> None:
    cfg = dict(default_scope='mmdet', model=dict(
        type='ResNet', depth=18,
        norm_cfg=dict(type='SyncBN', momentum=0.03, eps=0.001, requires_grad=False),
        plugins=[dict(cfg=dict(type='Foo', norm_cfg=dict(type='LN')), stages=(True,) * 4)]))
    changes = swap_norms(cfg, LCN_CFG)
    assert cfg['model']['norm_cfg'] == LCN_CFG
    assert cfg['model']['plugins'][0]['cfg']['norm_cfg'] == dict(type='LN')
    assert changes == ['model.norm_cfg: SyncBN -> LCN']


def test_mmseg_model_level_pretrained_stays() -> None:
    cfg = load_config('mmseg::pspnet/pspnet_r50-d8_4xb2-80k_cityscapes-512x1024.py')
    changes = swap_norms(cfg, LCN_CFG)
    assert cfg.model.pretrained == 'open-mmlab://resnet50_v1c'
    assert not any('pretrained' in c or 'init_cfg' in c for c in changes)
    assert {c.split(':')[0] for c in changes} >= {
        'model.backbone.norm_cfg', 'model.decode_head.norm_cfg',
        'model.auxiliary_head.norm_cfg'}


def test_swap_to_gn_keeps_pretrained_init() -> None:
    cfg = load_config('mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py')
    changes = swap_norms(cfg, norm_cfg('GN'))
    assert cfg.model.backbone.init_cfg.type == 'Pretrained'
    assert cfg.model.backbone.norm_cfg == dict(type='GN', num_groups=32, requires_grad=True)
    assert changes[0] == 'model.backbone.norm_cfg: BN -> GN'


def test_norm_cfg_presets() -> None:
    assert norm_cfg('LCN', {'window_size': (31, 31)}) == dict(type='LCN', window_size=(31, 31))
    assert norm_cfg('GN', num_groups=16) == dict(type='GN', num_groups=16, requires_grad=True)
    assert norm_cfg('Custom') == dict(type='Custom')
    assert NORM_PRESETS['LCN'] == dict(type='LCN')  # the layer's defaults
    with pytest.raises(ValueError, match='string type'):
        swap_norms(dict(model=dict()), dict(num_groups=32))
