"""Build a config's model offline and run one tiny training/inference step on CPU.

Why: a config can parse fine and still fail when its model is built or run (a norm that does
not divide a head's channels, a leaked BN key, a 1x1 pooled map). This checks that without
weights, datasets or a GPU; the tests use it for every config, and users can for theirs.
"""
from __future__ import annotations

import copy
import logging
from typing import Any, MutableMapping

import torch
from mmengine.logging import MMLogger
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import MODELS, DefaultScope
from torch import nn

__all__ = ['disable_pretrained', 'limit_rois', 'build_model', 'demo_batch', 'loss_step',
           'predict_step']

_PRETRAINED_INITS = ('Pretrained', )


def disable_pretrained(cfg: MutableMapping) -> list[str]:
    """Drop every pretrained init (``init_cfg`` of type Pretrained, ``pretrained=...``) in place.

    Returns the paths that were changed.
    """
    changed: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f'{path}[{i}]')
        elif isinstance(node, MutableMapping):
            init = node.get('init_cfg')
            inits = init if isinstance(init, list) else [init]
            if any(isinstance(i, MutableMapping) and i.get('type') in _PRETRAINED_INITS
                   for i in inits):
                node['init_cfg'] = None
                changed.append(f'{path}.init_cfg')
            if isinstance(node.get('pretrained'), str):
                node['pretrained'] = None
                changed.append(f'{path}.pretrained')
            for key, value in node.items():
                walk(value, f'{path}.{key}')

    walk(cfg['model'], 'model')
    cfg['load_from'] = None
    return changed


def limit_rois(cfg: MutableMapping, num: int = 32) -> None:
    """Cap a two-stage detector's proposals and sampled RoIs at ``num`` (in place).

    The 4conv1fc heads of the gn/lcn configs cost ~0.1 GFLOP per RoI, so the upstream 512
    sampled / 1000 test proposals dominate a CPU check; the code paths stay the same.
    """
    model = cfg['model']
    for key in ('train_cfg', 'test_cfg'):
        stage_cfgs = model.get(key) or {}
        for stage in ('rpn_proposal', 'rpn'):
            if isinstance(stage_cfgs.get(stage), MutableMapping) and \
                    'max_per_img' in stage_cfgs[stage]:
                stage_cfgs[stage].update(nms_pre=num, max_per_img=num)
        rcnn = stage_cfgs.get('rcnn')
        for stage_cfg in rcnn if isinstance(rcnn, list) else [rcnn]:  # Cascade: one per stage
            if isinstance(stage_cfg, MutableMapping):
                if 'sampler' in stage_cfg:
                    stage_cfg['sampler']['num'] = num
                if 'max_per_img' in stage_cfg:
                    stage_cfg['max_per_img'] = num


def build_model(cfg: MutableMapping, init: bool = True) -> nn.Module:
    """Build ``cfg.model`` in the config's scope, without pretrained weights.

    SyncBN is reverted to BN, as mmengine's Runner does on one process. ``init`` runs the
    model's ``init_weights`` (its non-pretrained init rules; a few seconds for a ResNet-50).
    """
    cfg = copy.deepcopy(cfg)
    disable_pretrained(cfg)
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        model = MODELS.build(cfg['model'])
    model = revert_sync_batchnorm(model)
    if not init:
        return model
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # init_weights logs every parameter at INFO
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    return model


def demo_batch(cfg: MutableMapping, size: int = 128, batch_size: int = 1) -> dict:
    """A random batch in the format the config's data preprocessor takes (mmdet or mmseg)."""
    scope = cfg.get('default_scope')
    if scope == 'mmdet':
        from mmdet.testing import demo_mm_inputs
        roi_head = cfg['model'].get('roi_head') or {}
        # two-stage: roi_head.bbox_head (a list per stage in Cascade); one-stage: bbox_head
        bbox_head = roi_head.get('bbox_head') or cfg['model']['bbox_head']
        bbox_head = bbox_head[0] if isinstance(bbox_head, list) else bbox_head
        return demo_mm_inputs(
            batch_size=batch_size, image_shapes=[(3, size, size)] * batch_size,
            num_items=[3] * batch_size, num_classes=bbox_head['num_classes'],
            with_mask='mask_head' in roi_head)
    if scope == 'mmseg':
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample
        num_classes = cfg['model']['decode_head']['num_classes']
        inputs, samples = [], []
        for _ in range(batch_size):
            inputs.append(torch.randint(0, 256, (3, size, size), dtype=torch.uint8))
            sample = SegDataSample(metainfo=dict(
                img_shape=(size, size), ori_shape=(size, size), pad_shape=(size, size)))
            sample.gt_sem_seg = PixelData(
                data=torch.randint(0, num_classes, (1, size, size), dtype=torch.long))
            samples.append(sample)
        return dict(inputs=inputs, data_samples=samples)
    raise ValueError(f'no demo batch for default_scope={scope!r} (mmdet and mmseg only)')


def _preprocess(model: nn.Module, batch: dict, training: bool) -> dict:
    """Run the model's data preprocessor; mmseg's pads to the training crop, so shrink it."""
    preprocessor = model.data_preprocessor
    if getattr(preprocessor, 'size', None) is not None:
        preprocessor.size = tuple(batch['inputs'][0].shape[-2:])
    return preprocessor(batch, training)


def loss_step(model: nn.Module, batch: dict) -> torch.Tensor:
    """One training forward and backward; returns the (scalar) total loss."""
    model.train()
    data = _preprocess(model, batch, True)
    loss, _ = model.parse_losses(model(**data, mode='loss'))
    loss.backward()
    return loss


@torch.no_grad()
def predict_step(model: nn.Module, batch: dict) -> list:
    """One inference forward in eval mode; returns the data samples with predictions."""
    model.eval()
    return model(**_preprocess(model, batch, False), mode='predict')
