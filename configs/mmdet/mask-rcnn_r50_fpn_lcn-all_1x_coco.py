# mask-rcnn_r50_fpn_lcn-all_2x_coco.py on the 1x schedule (mmdet's schedule_1x).
_base_ = './mask-rcnn_r50_fpn_lcn-all_2x_coco.py'
max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[8, 11],
        gamma=0.1)
]
