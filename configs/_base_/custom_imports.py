# Import lcn_mm while the config is parsed, so mmdet's/mmseg's own tools (train.py, test.py,
# init_detector / init_model, `mim train/test`) build LCN layers with no `import lcn_mm`.
custom_imports = dict(imports=['lcn_mm'], allow_failed_imports=False)
