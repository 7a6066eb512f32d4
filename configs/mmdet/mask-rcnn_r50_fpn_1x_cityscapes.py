# BN baseline: the upstream config unchanged (plus the lcn_mm import), for comparisons.
_base_ = ['mmdet::cityscapes/mask-rcnn_r50_fpn_1x_cityscapes.py', '../_base_/custom_imports.py']
