# LCN in every norm slot of mmdet's Cityscapes Mask R-CNN. As upstream starts from its COCO
# model, this starts from ours: run mask-rcnn_r50_fpn_lcn-all_2x_coco.py first (default
# work dir), or pass --cfg-options load_from=<your COCO LCN checkpoint>.
_base_ = ['./mask-rcnn_r50_fpn_gn-all_1x_cityscapes.py', '../_base_/lcn.py']
# _delete_: replace the inherited GN dicts whole (no GN-only keys left over).
norm_cfg = dict(_delete_=True, **_base_.lcn_norm_cfg)
model = dict(
    backbone=dict(norm_cfg=norm_cfg, norm_eval=False),
    neck=dict(norm_cfg=norm_cfg),
    roi_head=dict(
        bbox_head=dict(norm_cfg=norm_cfg), mask_head=dict(norm_cfg=norm_cfg)))
load_from = 'work_dirs/mask-rcnn_r50_fpn_lcn-all_2x_coco/epoch_24.pth'
