# Shared LCN settings of every `lcn` config (docs/configs.md explains the values).
# dict(type='LCN') is the layer's default: window 63 (feature-map pixels, the same for every
#   layer, so its image-plane extent grows with the stride: 63 px at stride 4 ~ 250 image px)
#   and 32 groups as GN (the largest divisor of C up to 32 where 32 does not divide C).
lcn_norm_cfg = dict(type='LCN')
# The GN ImageNet backbone of mmdet's gn configs; its gn* norm weights load into the lcn*
# layers under their GN names (lcn_mm/layers/bn_gn_keys.py), so plain Pretrained works.
lcn_backbone_init_cfg = dict(
    type='Pretrained', checkpoint='open-mmlab://detectron/resnet50_gn')
