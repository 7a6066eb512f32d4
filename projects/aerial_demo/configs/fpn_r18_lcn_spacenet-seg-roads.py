# Semantic FPN R18 + 64-channel FPN, LCN everywhere, trained from scratch on the SpaceNet
# Las Vegas road masks (binary, 256x256 tiles). mmseg; IoUMetric mIoU. Used for the LCN window
# sweep, so that the window is chosen on another dataset's val split than the one the norm
# study reports on (docs/results.md).
_base_ = ['./_base_/datasets/spacenet_seg_roads.py', './_base_/models/semantic-fpn_r18.py']
