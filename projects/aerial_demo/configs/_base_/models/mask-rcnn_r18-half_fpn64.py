# Mask R-CNN, ResNet-18 at half width and three stages (32-128 channels) + 64-channel FPN
# (strides 4-16), one norm_cfg in the backbone, FPN and mask head (the 2-fc box head has no
# norm), randomly initialised (no pretrained weights offline). Sized for small objects
# (<= ~40 px) on 128-256 px tiles and a CPU; anchors of 16-96 px at two scales per level;
# 32 RoIs per tile sampled, half positive. Used by the nuclei and buildings configs.
_base_ = ['../demo_runtime.py']
default_scope = 'mmdet'

norm_cfg = {{_base_.norm_cfg}}
ch = 64
base = 32
strides = [4, 8, 16]
model = dict(
    type='MaskRCNN',
    data_preprocessor=dict(
        type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True, pad_mask=True, pad_size_divisor=32),
    backbone=dict(
        type='ResNet', depth=18, base_channels=base, num_stages=3, strides=(1, 2, 2),
        dilations=(1, 1, 1), out_indices=(0, 1, 2), frozen_stages=-1,
        norm_cfg=norm_cfg, norm_eval=False, style='pytorch', init_cfg=None),
    neck=dict(type='FPN', in_channels=[base, 2 * base, 4 * base], out_channels=ch,
              num_outs=3, norm_cfg=norm_cfg),
    rpn_head=dict(
        type='RPNHead', in_channels=ch, feat_channels=ch,
        anchor_generator=dict(type='AnchorGenerator', scales=[4, 6], ratios=[0.5, 1.0, 2.0],
                              strides=strides),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
                        target_stds=[1.0, 1.0, 1.0, 1.0]),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    roi_head=dict(
        type='StandardRoIHead',
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor', roi_layer=dict(type='RoIAlign', output_size=7,
                                                      sampling_ratio=0),
            out_channels=ch, featmap_strides=strides),
        bbox_head=dict(
            type='Shared2FCBBoxHead', in_channels=ch, fc_out_channels=256, roi_feat_size=7,
            num_classes=1,
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                            target_stds=[0.1, 0.1, 0.2, 0.2]),
            reg_class_agnostic=False,
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
        mask_roi_extractor=dict(
            type='SingleRoIExtractor', roi_layer=dict(type='RoIAlign', output_size=14,
                                                      sampling_ratio=0),
            out_channels=ch, featmap_strides=strides),
        mask_head=dict(type='FCNMaskHead', num_convs=2, in_channels=ch, conv_out_channels=ch,
                       num_classes=1, norm_cfg=norm_cfg,
                       loss_mask=dict(type='CrossEntropyLoss', use_mask=True,
                                      loss_weight=1.0))),
    train_cfg=dict(
        rpn=dict(
            assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3,
                          min_pos_iou=0.3, match_low_quality=True, ignore_iof_thr=-1),
            sampler=dict(type='RandomSampler', num=128, pos_fraction=0.5, neg_pos_ub=-1,
                         add_gt_as_proposals=False),
            allowed_border=-1, pos_weight=-1, debug=False),
        rpn_proposal=dict(nms_pre=500, max_per_img=200, nms=dict(type='nms', iou_threshold=0.7),
                          min_bbox_size=0),
        rcnn=dict(
            assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5,
                          min_pos_iou=0.5, match_low_quality=True, ignore_iof_thr=-1),
            sampler=dict(type='RandomSampler', num=32, pos_fraction=0.5, neg_pos_ub=-1,
                         add_gt_as_proposals=True),
            mask_size=28, pos_weight=-1, debug=False)),
    test_cfg=dict(
        rpn=dict(nms_pre=1000, max_per_img=300, nms=dict(type='nms', iou_threshold=0.7),
                 min_bbox_size=0),
        rcnn=dict(score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5), max_per_img=100,
                  mask_thr_binary=0.5)))

default_hooks = dict(visualization=dict(type='DetVisualizationHook', draw=False))
visualizer = dict(type='DetLocalVisualizer', vis_backends=[dict(type='LocalVisBackend')],
                  name='visualizer')
