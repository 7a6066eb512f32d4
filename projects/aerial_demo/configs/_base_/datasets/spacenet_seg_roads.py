# Binary semantic segmentation, mmseg layout (img_dir/ann_dir), 256x256 tiles:
# SpaceNet Las Vegas roads (~0.3 m, source mask ~13 px wide around centre lines);
# train x < 788 px, val = right 512 px.
# Labels: 0 background, 1 road. Train tiles overlap by half, val tiles do not.
# Same pipelines, loaders and metric as the buildings set; only the data and classes differ.
_base_ = './spacenet_seg_buildings.py'
data_root = 'data/spacenet_seg/roads/'
metainfo = dict(classes=('background', 'road'), palette=[[0, 0, 0], [255, 200, 0]])

train_dataloader = dict(dataset=dict(data_root=data_root, metainfo=metainfo))
val_dataloader = dict(dataset=dict(data_root=data_root, metainfo=metainfo))
test_dataloader = val_dataloader
