"""OpenMMLab glue: make the norm layers buildable from ``norm_cfg``.

mmcv 2.x's ``build_norm_layer`` reads mmengine's root ``MODELS`` registry; the mmdet, mmseg
and mmpretrain registries are its children, so one registration serves every scope.
"""
from mmengine.registry import MODELS

from .layers import LCN, LayerNormCHW, PositionalNorm

NORM_LAYERS_BY_NAME = {'LCN': LCN, 'PN': PositionalNorm, 'LNCHW': LayerNormCHW}

for _name, _cls in NORM_LAYERS_BY_NAME.items():
    MODELS.register_module(_name, module=_cls, force=True)

try:  # mmcv 1.x keeps a separate norm registry.
    from mmcv.cnn import NORM_LAYERS  # type: ignore[attr-defined]
except ImportError:
    pass
else:
    for _name, _cls in NORM_LAYERS_BY_NAME.items():
        NORM_LAYERS.register_module(_name, module=_cls, force=True)
