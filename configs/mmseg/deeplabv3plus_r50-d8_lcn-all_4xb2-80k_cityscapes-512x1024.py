# LCN in every norm slot (backbone, decode and auxiliary heads); the GN sibling with
# GN -> LCN and the GN ImageNet backbone loaded with gn -> lcn key renaming.
_base_ = ['./deeplabv3plus_r50-d8_gn-all_4xb2-80k_cityscapes-512x1024.py', '../_base_/lcn.py']
# _delete_: replace the inherited GN dicts whole (no GN-only keys left over).
norm_cfg = dict(_delete_=True, **_base_.lcn_norm_cfg)
model = dict(
    backbone=dict(norm_cfg=norm_cfg, init_cfg=_base_.lcn_backbone_init_cfg),
    decode_head=dict(norm_cfg=norm_cfg),  # 48-channel c1 bottleneck: 24 groups (default)
    auxiliary_head=dict(norm_cfg=norm_cfg))
