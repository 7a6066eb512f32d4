# Binary semantic segmentation, mmseg layout (img_dir/ann_dir), 256x256 tiles:
# SpaceNet Atlanta buildings (0.5 m, rasterised footprints);
# train x < 644 px, val = right 256 px.
# Labels: 0 background, 1 building. Train tiles overlap by half, val tiles do not.
# Paths are relative to the repository root (run tools from there). See docs/data.md.
dataset_type = 'BaseSegDataset'
data_root = 'data/spacenet_seg/buildings/'
metainfo = dict(classes=('background', 'building'), palette=[[0, 0, 0], [220, 20, 60]])
backend_args = None

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', backend_args=backend_args),
    # Overhead imagery has no "up": flip both ways. Tiles are used at native scale.
    dict(type='RandomFlip', prob=[0.25, 0.25], direction=['horizontal', 'vertical']),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', backend_args=backend_args),
    dict(type='PackSegInputs'),
]

train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        data_prefix=dict(img_path='img_dir/train', seg_map_path='ann_dir/train'),
        img_suffix='.jpg',
        seg_map_suffix='.png',
        reduce_zero_label=False,
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
        img_suffix='.jpg',
        seg_map_suffix='.png',
        reduce_zero_label=False,
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
