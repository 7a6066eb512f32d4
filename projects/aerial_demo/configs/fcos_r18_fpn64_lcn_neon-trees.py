# FCOS, ResNet-18 + 64-channel FPN (P3-P5), LCN everywhere (backbone, FPN, both head towers),
# trained from scratch on NEON tree crowns (256x256 tiles, 10 cm RGB). mmdet; COCO bbox mAP.
_base_ = ['./_base_/datasets/neon_trees.py', './_base_/demo_runtime.py']
default_scope = 'mmdet'

norm_cfg = {{_base_.norm_cfg}}
model = dict(
    type='FCOS',
    data_preprocessor=dict(
        type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True, pad_size_divisor=32),
    backbone=dict(
        type='ResNet', depth=18, num_stages=4, out_indices=(1, 2, 3), frozen_stages=-1,
        norm_cfg=norm_cfg, norm_eval=False, style='pytorch', init_cfg=None),
    neck=dict(
        type='FPN', in_channels=[128, 256, 512], out_channels=64, start_level=0,
        add_extra_convs='on_output', num_outs=3, relu_before_extra_convs=True,
        norm_cfg=norm_cfg),
    bbox_head=dict(
        type='FCOSHead', num_classes=1, in_channels=64, stacked_convs=2, feat_channels=64,
        strides=[8, 16, 32],
        # trees are 10-120 px across (median ~40 px)
        regress_ranges=((-1, 48), (48, 96), (96, 1e8)),
        norm_cfg=norm_cfg, norm_on_bbox=True, centerness_on_reg=True, center_sampling=True,
        center_sample_radius=1.5, dcn_on_last_conv=False,
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                      loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=1.0),
        loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0)),
    train_cfg=dict(
        assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0,
                      ignore_iof_thr=-1),
        allowed_border=-1, pos_weight=-1, debug=False),
    test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05,
                  nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))

default_hooks = dict(visualization=dict(type='DetVisualizationHook', draw=False))
visualizer = dict(type='DetLocalVisualizer', vis_backends=[dict(type='LocalVisBackend')],
                  name='visualizer')
