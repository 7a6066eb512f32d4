"""BN/GN checkpoints become LCN ones that load with no missing or unexpected keys."""
from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope

from lcn_mm.apis.checkpoint import convert_state_dict
from lcn_mm.apis.config import load_config
from lcn_mm.apis.norm_swap import swap_norms
from lcn_mm.presets import NORM_PRESETS
from lcn_mm.testing import build_model

ROOT = Path(__file__).resolve().parents[2]
CONVERTER = ROOT / 'tools' / 'model_converters' / 'norm2lcn.py'


def _run_converter(src: Path, dst: Path) -> str:
    out = subprocess.run([sys.executable, str(CONVERTER), str(src), str(dst)], check=True,
                         capture_output=True, text=True, cwd=ROOT)
    return out.stdout


def test_gn_all_mask_rcnn_checkpoint_to_lcn(tmp_path: Path) -> None:
    """A whole GN-all model (a Runner-style checkpoint) loads strictly into its LCN config."""
    gn = build_model(Config.fromfile(ROOT / 'configs/mmdet/mask-rcnn_r50_fpn_gn-all_2x_coco.py'),
                     init=False)
    src, dst = tmp_path / 'gn.pth', tmp_path / 'lcn.pth'
    torch.save(dict(state_dict=gn.state_dict(), meta=dict(epoch=24),
                    optimizer=dict(state={})), src)
    assert 'renamed' in _run_converter(src, dst)

    lcn = build_model(Config.fromfile(
        ROOT / 'configs/mmdet/mask-rcnn_r50_fpn_lcn-all_2x_coco.py'), init=False)
    ckpt = torch.load(dst, map_location='cpu', weights_only=True)
    assert set(ckpt) == {'state_dict', 'meta'}
    result = lcn.load_state_dict(ckpt['state_dict'], strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(lcn.backbone.layer1[0].lcn2.weight, gn.backbone.layer1[0].gn2.weight)
    assert torch.equal(lcn.neck.fpn_convs[0].lcn.bias, gn.neck.fpn_convs[0].gn.bias)


def test_bn_models_to_lcn_in_both_codebases(tmp_path: Path) -> None:
    """BN Mask R-CNN and SyncBN PSPNet (V1c deep stem) -> their --norm LCN swaps."""
    for upstream in ('mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
                     'mmseg::pspnet/pspnet_r50-d8_4xb2-80k_cityscapes-512x1024.py'):
        cfg = load_config(upstream)
        bn = build_model(cfg, init=False)
        src, dst = tmp_path / 'bn.pth', tmp_path / 'lcn.pth'
        torch.save(bn.state_dict(), src)  # a bare state dict, as torchvision ships
        _run_converter(src, dst)
        lcn_cfg = copy.deepcopy(cfg)
        swap_norms(lcn_cfg, NORM_PRESETS['LCN'])
        lcn = build_model(lcn_cfg, init=False)
        state_dict = torch.load(dst, map_location='cpu', weights_only=True)['state_dict']
        result = lcn.load_state_dict(state_dict, strict=True)
        assert not result.missing_keys and not result.unexpected_keys, upstream
        assert not any('running_' in k or 'num_batches' in k for k in state_dict)


def test_convert_state_dict_renames_only_norm_names() -> None:
    sd = {'conv1.weight': 1, 'bn1.weight': 2, 'layer1.0.gn3.bias': 3,
          'layer1.0.downsample.1.weight': 4, 'layer1.0.downsample.1.running_mean': 5,
          'head.bn.weight': 6, 'head.bnx.weight': 7, 'rbn1.weight': 8}
    out = convert_state_dict(sd)
    assert list(out.state_dict) == ['conv1.weight', 'lcn1.weight', 'layer1.0.lcn3.bias',
                                    'layer1.0.downsample.1.weight', 'head.lcn.weight',
                                    'head.bnx.weight', 'rbn1.weight']
    assert out.dropped == ['layer1.0.downsample.1.running_mean']
    assert len(out.renamed) == 3


def test_pretrained_init_loads_gn_backbone_into_lcn(tmp_path: Path) -> None:
    """The configs' plain Pretrained init fills every LCN of the backbone from a GN checkpoint."""
    with DefaultScope.overwrite_default_scope('mmdet'):
        gn_backbone = MODELS.build(dict(
            type='ResNet', depth=50, norm_cfg=dict(type='GN', num_groups=32)))
    for m in gn_backbone.modules():  # non-default values, so a skipped load would show
        if isinstance(m, torch.nn.GroupNorm):
            torch.nn.init.normal_(m.weight)
            torch.nn.init.normal_(m.bias)
    checkpoint = tmp_path / 'resnet50_gn.pth'
    torch.save(dict(state_dict=gn_backbone.state_dict()), checkpoint)

    cfg = Config.fromfile(ROOT / 'configs/mmdet/faster-rcnn_r50_fpn_lcn-all_1x_coco.py')
    assert cfg.model.backbone.init_cfg.type == 'Pretrained'
    backbone_cfg = copy.deepcopy(cfg.model.backbone)
    backbone_cfg.init_cfg.checkpoint = str(checkpoint)
    with DefaultScope.overwrite_default_scope('mmdet'):
        lcn_backbone = MODELS.build(backbone_cfg)
    lcn_backbone.init_weights()
    lcn_state = lcn_backbone.state_dict()
    expected = convert_state_dict(gn_backbone.state_dict()).state_dict
    assert set(lcn_state) == set(expected)
    for key, value in expected.items():
        assert torch.equal(lcn_state[key], value), key
