"""Every config under configs/ parses, builds in its scope and trains one step on CPU.

The norm check is what makes the comparison rows meaningful: an ``lcn`` config must have LCN
in backbone, neck and every head and no BN/GN left, its ``gn`` sibling only GN, and a baseline
only BN.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

import lcn_mm
from lcn_mm.apis.norm_swap import norm_layer_summary
from lcn_mm.testing import build_model, demo_batch, limit_rois, loss_step, predict_step

ROOT = Path(__file__).resolve().parents[1]
# The aerial demo's configs (projects/aerial_demo/configs) are tested by that project.
CONFIGS = sorted(p for p in (ROOT / 'configs').rglob('*.py')
                 if '_base_' not in p.relative_to(ROOT / 'configs').parts)
LCN_BASE = Config.fromfile(ROOT / 'configs' / '_base_' / 'lcn.py')
INPUT_SIZE = 64


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT / 'configs')) for p in paths]


def _norm_kind(path: Path) -> str:
    """Which norm a config is named for: 'lcn', 'gn' or the 'bn' baseline."""
    tokens = path.stem.replace('-', '_').split('_')
    return 'lcn' if 'lcn' in tokens else 'gn' if 'gn' in tokens else 'bn'


def _parts(model: nn.Module, scope: str) -> dict[str, nn.Module]:
    """The sub-models that must each carry the config's norm."""
    if scope == 'mmdet':
        parts = {'backbone': model.backbone, 'neck': model.neck,
                 'bbox_head': model.roi_head.bbox_head}
        if model.roi_head.with_mask:
            parts['mask_head'] = model.roi_head.mask_head
        return parts
    return {'backbone': model.backbone, 'decode_head': model.decode_head,
            'auxiliary_head': model.auxiliary_head}


def test_config_list_covers_the_issue() -> None:
    """The configs that issue #4 asks for exist, each with its GN sibling and BN baseline."""
    names = {p.name for p in CONFIGS}
    wanted = [f'mmdet/{m}_r50_fpn_lcn-all_{s}_coco.py'
              for m in ('faster-rcnn', 'mask-rcnn') for s in ('1x', '2x')]
    wanted.append('mmdet/mask-rcnn_r50_fpn_lcn-all_1x_cityscapes.py')
    wanted += [f'mmseg/{m}_r50-d8_lcn-all_{d}.py' for m in ('pspnet', 'deeplabv3plus')
               for d in ('4xb2-80k_cityscapes-512x1024', '4xb4-80k_ade20k-512x512')]
    for lcn in wanted:
        family, name = lcn.split('/')
        for sibling in (name, name.replace('lcn-all', 'gn-all'),
                        name.replace('_lcn-all', '')):
            assert sibling in names, f'missing configs/{family}/{sibling}'


@pytest.mark.parametrize('path', CONFIGS, ids=_ids(CONFIGS))
def test_config_builds_and_trains(path: Path) -> None:
    cfg = Config.fromfile(path)
    scope = cfg.default_scope
    assert scope in ('mmdet', 'mmseg')
    assert 'lcn_mm' in cfg.custom_imports['imports']
    assert cfg.custom_imports['allow_failed_imports'] is False
    limit_rois(cfg)
    kind = _norm_kind(path)
    model = build_model(cfg, init=kind == 'lcn')  # mmengine init rules reach LCN

    summary = norm_layer_summary(model)
    allowed = {'lcn': {'LCN'}, 'gn': {'GroupNorm'},
               'bn': {'BatchNorm2d', '_BatchNormXd'}}[kind]
    assert summary and set(summary) <= allowed, f'{kind} config has norms {dict(summary)}'
    if kind != 'bn':
        for name, part in _parts(model, scope).items():
            kinds = {type(m).__name__ for m in part.modules()
                     if isinstance(m, (_BatchNorm, nn.GroupNorm))}
            assert kinds == allowed, f'{name} has norms {kinds}, expected {allowed}'
    if kind == 'lcn':
        for module in model.modules():
            if isinstance(module, lcn_mm.LCN):
                assert tuple(module.window_size) == (63, 63)  # the layer default
                c, g = module.num_channels, module.num_groups  # 32, else the next divisor
                assert c % g == 0 and g <= 32 and all(c % k for k in range(g + 1, 33))
                assert not module.detach_stats
        assert cfg.model.backbone.get('norm_eval') is False

    batch_size = 1 if scope == 'mmdet' else 2  # BN baselines need 2 samples per 1x1 pool
    batch = demo_batch(cfg, INPUT_SIZE, batch_size)
    loss = loss_step(model, batch)
    assert torch.isfinite(loss)
    norm_grads = [m.weight.grad for m in model.modules()
                  if isinstance(m, (_BatchNorm, nn.GroupNorm)) and m.weight.requires_grad]
    assert norm_grads and all(g is not None and torch.isfinite(g).all() for g in norm_grads)
    if kind == 'lcn':  # inference path of LCN (eval mode, no targets)
        results = predict_step(model, batch)
        assert len(results) == batch_size


def _set_windows(node: object, window: tuple[int, int]) -> None:
    """Set ``window_size`` of every LCN norm_cfg under ``node`` (in place)."""
    if isinstance(node, list):
        for item in node:
            _set_windows(item, window)
    elif isinstance(node, dict):
        if node.get('type') == 'LCN':
            node['window_size'] = window
        for value in node.values():
            _set_windows(value, window)


@pytest.mark.parametrize('path', [
    'mmdet/mask-rcnn_r50_fpn_lcn-all_2x_coco.py',
    'mmseg/deeplabv3plus_r50-d8_lcn-all_4xb4-80k_ade20k-512x512.py',
])
def test_local_windows_in_full_model(path: str) -> None:
    """With a window smaller than the maps, the local (non-GN) path runs through the model.

    At test sizes the configs' 63 px window covers every map, where LCN is exactly GN.
    """
    cfg = Config.fromfile(ROOT / 'configs' / path)
    _set_windows(cfg.model, (3, 3))
    limit_rois(cfg)
    model = build_model(cfg, init=False)
    windows = {tuple(m.window_size) for m in model.modules() if isinstance(m, lcn_mm.LCN)}
    assert windows == {(3, 3)}
    scope = cfg.default_scope
    loss = loss_step(model, demo_batch(cfg, INPUT_SIZE, 1 if scope == 'mmdet' else 2))
    assert torch.isfinite(loss)


def test_lcn_configs_use_the_shared_settings() -> None:
    """The --norm LCN preset is the configs' norm, so a swapped upstream config matches."""
    from lcn_mm.presets import NORM_PRESETS
    assert NORM_PRESETS['LCN'] == LCN_BASE.lcn_norm_cfg.to_dict()
