# Semantic FPN, ResNet-18 (V1c stem) + 64-channel FPN, one norm_cfg everywhere (backbone, FPN,
# head), randomly initialised (no pretrained weights offline). Binary output (background, fg).
_base_ = ['../demo_runtime.py']
default_scope = 'mmseg'

norm_cfg = {{_base_.norm_cfg}}
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True, pad_val=0, seg_pad_val=255, size=(256, 256))
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='ResNetV1c', depth=18, num_stages=4, out_indices=(0, 1, 2, 3),
        dilations=(1, 1, 1, 1), strides=(1, 2, 2, 2), norm_cfg=norm_cfg, norm_eval=False,
        style='pytorch', contract_dilation=True, init_cfg=None),
    neck=dict(type='FPN', in_channels=[64, 128, 256, 512], out_channels=64, num_outs=4,
              norm_cfg=norm_cfg),
    decode_head=dict(
        type='FPNHead', in_channels=[64, 64, 64, 64], in_index=[0, 1, 2, 3],
        feature_strides=[4, 8, 16, 32], channels=64, dropout_ratio=0.1, num_classes=2,
        norm_cfg=norm_cfg, align_corners=False,
        # the foreground is 2-4 % of the pixels: weight it up so the model does not settle on
        # all-background (the trivial baseline the demo prints)
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0,
                         class_weight=[1.0, 5.0])),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

default_hooks = dict(visualization=dict(type='SegVisualizationHook', draw=False))
visualizer = dict(type='SegLocalVisualizer', vis_backends=[dict(type='LocalVisBackend')],
                  name='visualizer')
