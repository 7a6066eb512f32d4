# BN baseline: the upstream config unchanged (plus the lcn_mm import), for comparisons.
_base_ = [
    'mmseg::pspnet/pspnet_r50-d8_4xb4-80k_ade20k-512x512.py',
    '../_base_/custom_imports.py'
]
