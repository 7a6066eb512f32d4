# SpaceNet Atlanta buildings: COCO instance segmentation (polygons) on 256x256 tiles
# of a 0.5 m panchromatic scene (replicated to 3 channels). Split by image region:
# x < 644 px is train (tiles overlap by half), the right 256 px are val (docs/data.md).
# Paths are relative to the repository root (run tools from there).
dataset_type = 'CocoDataset'
data_root = 'data/spacenet_buildings/'
metainfo = dict(classes=('building', ), palette=[(220, 20, 60)])
backend_args = None

# Buildings are 10-50 px across at 0.5 m: images are upsampled x2 (train and test), so that
# stride-4 features and 28x28 mask targets resolve them; training crops 256 px of the x2 tile
# (a quarter of it), so a step costs what it did at x1.
# Augmentation: the train split holds only 33 distinct buildings (tiles overlap), and a
# from-scratch Mask R-CNN memorises them (train mAP ~100, val 0 after 900 iterations without
# it; docs/results.md). Scale jitter (+-25 %) and all 8 symmetries of the square (overhead
# imagery has no "up": flips + RandomTranspose from aerial_demo.transforms).
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomResize', scale=(512, 512), ratio_range=(0.8, 1.25),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=(256, 256), recompute_bbox=True),
    # drop buildings the crop cut to slivers (degenerate boxes give non-finite box targets)
    dict(type='FilterAnnotations', min_gt_bbox_wh=(2, 2), keep_empty=False),
    dict(type='RandomFlip', prob=[0.25, 0.25, 0.25],
         direction=['horizontal', 'vertical', 'diagonal']),
    dict(type='RandomTranspose', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale_factor=2.0, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor')),
]

train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/train.json',
        data_prefix=dict(img='images/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/val.json',
        data_prefix=dict(img='images/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = val_dataloader

val_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + 'annotations/val.json',
    metric=['bbox', 'segm'],
    format_only=False,
    backend_args=backend_args)
test_evaluator = val_evaluator
