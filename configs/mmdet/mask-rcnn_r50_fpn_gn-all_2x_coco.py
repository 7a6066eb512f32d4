# GN sibling: mmdet's own GN-all Mask R-CNN (backbone, FPN, 4conv1fc box head, mask head).
_base_ = [
    'mmdet::gn/mask-rcnn_r50_fpn_gn-all_2x_coco.py', '../_base_/custom_imports.py'
]
