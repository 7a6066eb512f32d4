# Mask R-CNN, ResNet-18 at half width (32-256 channels) + 64-channel FPN, LCN everywhere
# (backbone, FPN, 4conv1fc box head, mask head), trained from scratch on SpaceNet Atlanta
# buildings (256x256 tiles at 0.5 m, upsampled x2). mmdet; COCO bbox and segm mAP.
# For the CPU: the half-width backbone makes a step ~1.6x cheaper, so the schedule can be
# twice as long (docs/results.md); RoI counts are cut (buildings: < 15 per tile).
# The nuclei model (_base_/models) with four stages, five FPN levels and a box head with norms.
_base_ = ['./_base_/datasets/spacenet_buildings.py', './_base_/models/mask-rcnn_r18-half_fpn64.py']

norm_cfg = {{_base_.norm_cfg}}
ch = 64  # as in the base model
strides = [4, 8, 16, 32]
model = dict(
    backbone=dict(num_stages=4, strides=(1, 2, 2, 2), dilations=(1, 1, 1, 1),
                  out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=[32, 64, 128, 256], num_outs=5),
    rpn_head=dict(
        # buildings are 8-40 px across at 0.5 m
        anchor_generator=dict(scales=[4], strides=[4, 8, 16, 32, 64])),
    roi_head=dict(
        bbox_roi_extractor=dict(featmap_strides=strides),
        bbox_head=dict(
            type='Shared4Conv1FCBBoxHead', conv_out_channels=ch, fc_out_channels=128,
            norm_cfg=norm_cfg),
        mask_roi_extractor=dict(featmap_strides=strides)),
    train_cfg=dict(rcnn=dict(sampler=dict(num=64, pos_fraction=0.25))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=100), rcnn=dict(max_per_img=50)))

# Weight averaging (EMA over ~100 steps): from scratch on 33 buildings the val mAP of the raw
# weights swings by several points between neighbouring checkpoints; the average is steadier.
# update_buffers: BN's running statistics are averaged too (norm study).
custom_hooks = [dict(type='EMAHook', ema_type='ExponentialMovingAverage', momentum=0.01,
                     update_buffers=True, priority=49)]
