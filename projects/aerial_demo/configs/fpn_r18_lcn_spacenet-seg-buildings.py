# Semantic FPN R18 + 64-channel FPN, LCN everywhere, trained from scratch on the SpaceNet
# Atlanta building masks (binary, 256x256 tiles). mmseg; IoUMetric mIoU. The norm study's
# semantic-segmentation task (docs/results.md).
_base_ = ['./_base_/datasets/spacenet_seg_buildings.py', './_base_/models/semantic-fpn_r18.py']
