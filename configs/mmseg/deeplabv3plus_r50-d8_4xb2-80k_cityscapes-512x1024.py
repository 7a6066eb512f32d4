# BN baseline: the upstream config unchanged (plus the lcn_mm import), for comparisons.
_base_ = [
    'mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb2-80k_cityscapes-512x1024.py',
    '../_base_/custom_imports.py'
]
