# DSB2018 nuclei (the 512x512 fluorescence image with 125 labelled nuclei shipped in stardist
# 0.9.2, BSD-3): COCO instance segmentation (RLE masks), one class, split by image region:
# x < 288 px is train (128x128 tiles overlapping by half), the right 224 px are val (one whole
# 224x512 image, 45 nuclei; no val nucleus is cut by a tile). See docs/data.md.
# Loaders and metric as for the SpaceNet buildings; the data, scale and batch differ.
_base_ = './spacenet_buildings.py'
data_root = 'data/nuclei/'
metainfo = dict(classes=('nucleus', ), palette=[(0, 220, 120)])

# Nuclei are ~25 px across at native scale: no resizing. A microscope image has no "up" either:
# all 8 symmetries of the square (flips + RandomTranspose from aerial_demo.transforms), and
# +-20 % scale jitter around the native size, cropped back to the tile.
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomResize', scale=(128, 128), ratio_range=(0.8, 1.2), keep_ratio=True),
    dict(type='RandomCrop', crop_size=(128, 128), recompute_bbox=True, allow_negative_crop=True),
    # drop nuclei the crop cut to slivers (degenerate boxes give non-finite box targets)
    dict(type='FilterAnnotations', min_gt_bbox_wh=(2, 2), keep_empty=False),
    dict(type='RandomFlip', prob=[0.25, 0.25, 0.25],
         direction=['horizontal', 'vertical', 'diagonal']),
    dict(type='RandomTranspose', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale_factor=1.0, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]

train_dataloader = dict(dataset=dict(data_root=data_root, metainfo=metainfo,
                                     filter_cfg=dict(min_size=8), pipeline=train_pipeline))
val_dataloader = dict(batch_size=1, dataset=dict(data_root=data_root, metainfo=metainfo,
                                                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/val.json')
test_evaluator = val_evaluator
