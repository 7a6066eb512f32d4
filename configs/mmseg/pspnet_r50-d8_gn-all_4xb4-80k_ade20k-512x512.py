# GN sibling of pspnet_r50-d8_lcn-all_4xb4-80k_ade20k-512x512.py:
# GN (32 groups) in backbone, decode and auxiliary heads. No GN-pretrained ResNetV1c
# exists, so the backbone is the plain (7x7-stem) ResNet-50 with the GN ImageNet weights
# and caffe-style input normalization of mmdet's gn configs.
_base_ = [
    'mmseg::pspnet/pspnet_r50-d8_4xb4-80k_ade20k-512x512.py',
    '../_base_/custom_imports.py'
]
norm_cfg = dict(_delete_=True, type='GN', num_groups=32, requires_grad=True)
model = dict(
    pretrained=None,
    data_preprocessor=dict(
        mean=[103.530, 116.280, 123.675], std=[1.0, 1.0, 1.0], bgr_to_rgb=False),
    backbone=dict(
        type='ResNet',
        norm_cfg=norm_cfg,
        init_cfg=dict(
            type='Pretrained', checkpoint='open-mmlab://detectron/resnet50_gn')),
    decode_head=dict(norm_cfg=norm_cfg),
    auxiliary_head=dict(norm_cfg=norm_cfg))
