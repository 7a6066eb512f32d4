# Shared LCN settings of every `lcn` config (docs/configs.md explains the values).
# num_groups=32: the groups of the GN-pretrained ImageNet backbone (and of the GN siblings), so
#   LCN starts from the same grouping and equals GN wherever the window covers the map.
# window_size: in feature-map pixels, the same for every layer, so its image-plane extent
#   grows with the stride (63 px at stride 4 ~ 250 image px, at stride 32 ~ 2000 px).
lcn_norm_cfg = dict(type='LCN', num_groups=32, window_size=(63, 63))
# The GN ImageNet backbone of mmdet's gn configs, loaded with its gn* keys renamed to lcn*.
lcn_backbone_init_cfg = dict(
    type='LCNPretrained', checkpoint='open-mmlab://detectron/resnet50_gn')
