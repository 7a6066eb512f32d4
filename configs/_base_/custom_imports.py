# Import lcn_mm while the config is parsed (works with mmdet/mmseg's own tools/train.py and
# `mim train`): registers the LCN/PN/LNCHW norms and the LCNPretrained initializer.
custom_imports = dict(imports=['lcn_mm', 'lcn_mm.utils'], allow_failed_imports=False)
