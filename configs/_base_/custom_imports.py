# Import lcn_mm while the config is parsed (works with mmdet/mmseg's own tools/train.py and
# `mim train`): registers the LCN/PN/LNCHW norms, the LCNPretrained initializer and the
# RandomTranspose data transform (lcn_mm.datasets).
custom_imports = dict(imports=['lcn_mm', 'lcn_mm.utils', 'lcn_mm.datasets'],
                      allow_failed_imports=False)
