# LCN in every norm slot of Faster R-CNN R50-FPN (backbone, FPN, 4conv1fc box head); the
# GN sibling with GN -> LCN and the GN ImageNet backbone loaded with gn -> lcn key renaming.
_base_ = ['./faster-rcnn_r50_fpn_gn-all_1x_coco.py', '../_base_/lcn.py']
# _delete_: replace the inherited GN dicts whole (no GN-only keys left over).
norm_cfg = dict(_delete_=True, **_base_.lcn_norm_cfg)
model = dict(
    backbone=dict(
        norm_cfg=norm_cfg,
        norm_eval=False,  # a BN-only switch; explicit because LCN has no running stats
        init_cfg=_base_.lcn_backbone_init_cfg),
    neck=dict(norm_cfg=norm_cfg),
    roi_head=dict(bbox_head=dict(norm_cfg=norm_cfg)))
