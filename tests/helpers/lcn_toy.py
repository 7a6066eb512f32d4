# A tiny conv -> LCN -> conv regression model (tests/helpers/toy.py) for runner-level tests:
# distributed training, resume, AMP and bad input through tools/train.py, in seconds on CPU.
custom_imports = dict(imports=['lcn_mm', 'helpers.toy'],
                      allow_failed_imports=False)
default_scope = 'mmseg'  # tools/train.py runs mmdet/mmseg configs; the toy lives in the root
model = dict(type='LCNToyNet', norm_cfg=dict(type='LCN', num_groups=2, window_size=5))
train_dataloader = dict(
    batch_size=2, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=True, seed=0),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='LCNToyDataset', length=32, size=16, seed=0))
train_cfg = dict(type='IterBasedTrainLoop', max_iters=6)
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4))
param_scheduler = [dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=4)]
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=1),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=3),
    sampler_seed=dict(type='DistSamplerSeedHook'))
custom_hooks = [dict(type='LCNToyHook')]  # params_rank<r>.pth; LCN_TOY_KILL_AT_ITER
randomness = dict(seed=0, deterministic=True)
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork'),
               dist_cfg=dict(backend='gloo'))
log_level = 'INFO'
