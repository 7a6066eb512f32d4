# Mask R-CNN, ResNet-18 at half width (32-256 channels) + 64-channel FPN, LCN everywhere
# (backbone, FPN, 4conv1fc box head, mask head), trained from scratch on SpaceNet Atlanta
# buildings (256x256 tiles at 0.5 m, upsampled x2). mmdet; COCO bbox and segm mAP.
# For the CPU: the half-width backbone makes a step ~1.6x cheaper, so the schedule can be
# twice as long (docs/results.md); RoI counts are cut (buildings: < 15 per tile).
_base_ = ['./_base_/datasets/spacenet_buildings.py', './_base_/demo_runtime.py']
default_scope = 'mmdet'

norm_cfg = {{_base_.norm_cfg}}
ch = 64
base = 32
model = dict(
    type='MaskRCNN',
    data_preprocessor=dict(
        type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True, pad_mask=True, pad_size_divisor=32),
    backbone=dict(
        type='ResNet', depth=18, base_channels=base, num_stages=4, out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_cfg=norm_cfg, norm_eval=False, style='pytorch', init_cfg=None),
    neck=dict(type='FPN', in_channels=[base, 2 * base, 4 * base, 8 * base], out_channels=ch,
              num_outs=5,
              norm_cfg=norm_cfg),
    rpn_head=dict(
        type='RPNHead', in_channels=ch, feat_channels=ch,
        # buildings are 8-40 px across at 0.5 m
        anchor_generator=dict(type='AnchorGenerator', scales=[4], ratios=[0.5, 1.0, 2.0],
                              strides=[4, 8, 16, 32, 64]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
                        target_stds=[1.0, 1.0, 1.0, 1.0]),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    roi_head=dict(
        type='StandardRoIHead',
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor', roi_layer=dict(type='RoIAlign', output_size=7,
                                                      sampling_ratio=0),
            out_channels=ch, featmap_strides=[4, 8, 16, 32]),
        bbox_head=dict(
            type='Shared4Conv1FCBBoxHead', in_channels=ch, conv_out_channels=ch,
            fc_out_channels=128, roi_feat_size=7, num_classes=1, norm_cfg=norm_cfg,
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                            target_stds=[0.1, 0.1, 0.2, 0.2]),
            reg_class_agnostic=False,
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
        mask_roi_extractor=dict(
            type='SingleRoIExtractor', roi_layer=dict(type='RoIAlign', output_size=14,
                                                      sampling_ratio=0),
            out_channels=ch, featmap_strides=[4, 8, 16, 32]),
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
            sampler=dict(type='RandomSampler', num=64, pos_fraction=0.25, neg_pos_ub=-1,
                         add_gt_as_proposals=True),
            mask_size=28, pos_weight=-1, debug=False)),
    test_cfg=dict(
        rpn=dict(nms_pre=500, max_per_img=100, nms=dict(type='nms', iou_threshold=0.7),
                 min_bbox_size=0),
        rcnn=dict(score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5), max_per_img=50,
                  mask_thr_binary=0.5)))

default_hooks = dict(visualization=dict(type='DetVisualizationHook', draw=False))
visualizer = dict(type='DetLocalVisualizer', vis_backends=[dict(type='LocalVisBackend')],
                  name='visualizer')

# Weight averaging (EMA over ~100 steps): from scratch on 33 buildings the val mAP of the raw
# weights swings by several points between neighbouring checkpoints; the average is steadier.
# update_buffers: BN's running statistics are averaged too (norm study).
custom_hooks = [dict(type='EMAHook', ema_type='ExponentialMovingAverage', momentum=0.01,
                     update_buffers=True, priority=49)]
