# BN baseline: the upstream config unchanged (plus the lcn_mm import), for comparisons.
_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py', '../_base_/custom_imports.py']
