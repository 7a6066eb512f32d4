# Runtime shared by the CPU demo configs (projects/aerial_demo/configs/*.py): iteration-based
# schedule with one validation at the end, CPU-friendly env, deterministic seed, quiet logs every
# 10 iterations.
# The demo configs are sized for 2 CPU cores (docs/results.md); `make demo` runs all three.
# lcn_mm: the LCN/PN/LNCHW norms; aerial_demo: RandomTranspose (projects/aerial_demo on the
# Python path: the demo tools put it there, `export PYTHONPATH=projects/aerial_demo` otherwise).
custom_imports = dict(imports=['lcn_mm', 'aerial_demo'], allow_failed_imports=False)

# Norm of every layer (backbone, neck, heads). Change it with tools/train.py --norm ...
# (lcn_mm.apis.swap_norms), which rewrites every norm dict of the built config.
# window 7 (feature pixels): ~28 image px at stride 4 (64x64 maps on 256-px tiles), ~224 px at
# stride 32 (8x8 maps, nearly GN there). Chosen from 7 / 15 / 31 by the sweep on the roads val
# split (docs/results.md); 16 groups divide every width of the demo models (32 ... 512).
norm_cfg = dict(type='LCN', num_groups=16, window_size=7)

max_iters = 100
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    type='OptimWrapper',
    # Adam: trained from scratch, one setting that works for every norm (BN ... LCN).
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=1e-4),
    clip_grad=dict(max_norm=10.0, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=10),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=10, end=max_iters, eta_min=1e-5),
]

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=10, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters, max_keep_ckpts=1),
    sampler_seed=dict(type='DistSamplerSeedHook'))
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0, deterministic=False)
log_processor = dict(by_epoch=False, window_size=10)
log_level = 'INFO'
load_from = None
resume = False
