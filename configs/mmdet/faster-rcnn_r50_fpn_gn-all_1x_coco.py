# GN sibling of faster-rcnn_r50_fpn_lcn-all_1x_coco.py: GN (32 groups) in backbone, FPN and a
# 4conv1fc box head, from the GN ImageNet backbone; as mmdet's
# gn+ws/faster-rcnn_r50_fpn_gn-ws-all_1x_coco.py without weight standardization and with
# the caffe-style input normalization of gn/mask-rcnn_r50_fpn_gn-all_2x_coco.py.
_base_ = [
    'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', '../_base_/custom_imports.py'
]
norm_cfg = dict(type='GN', num_groups=32, requires_grad=True)
model = dict(
    data_preprocessor=dict(
        mean=[103.530, 116.280, 123.675], std=[1.0, 1.0, 1.0], bgr_to_rgb=False),
    backbone=dict(
        norm_cfg=norm_cfg,
        init_cfg=dict(
            type='Pretrained', checkpoint='open-mmlab://detectron/resnet50_gn')),
    neck=dict(norm_cfg=norm_cfg),
    roi_head=dict(
        bbox_head=dict(
            type='Shared4Conv1FCBBoxHead', conv_out_channels=256,
            norm_cfg=norm_cfg)))
