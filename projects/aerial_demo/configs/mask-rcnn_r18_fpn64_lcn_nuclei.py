# Mask R-CNN, ResNet-18 at half width and three stages (32-128 channels) + 64-channel FPN
# (strides 4-16), LCN in the backbone, FPN and mask head, trained from scratch on the DSB2018
# nuclei image of stardist (128x128 train tiles, native scale). mmdet; COCO bbox and segm mAP.
# The `make demo` instance-segmentation task (projects/aerial_demo/TASKS.md).
# Sized to the objects and the CPU: nuclei are 6-31 px across, so the stride-32 stage and the
# coarse FPN levels only cost time. The RoI heads dominate a step on 128x128 tiles (box-head
# convs and RoIAlign backward over 256 RoIs, profiled), so the box head is mmdet's standard 2-fc
# head and 32 RoIs per tile are sampled (a tile holds <= 15 nuclei, the val image 45).
_base_ = ['./_base_/datasets/nuclei.py', './_base_/models/mask-rcnn_r18-half_fpn64.py']
