"""Build any mmdet/mmseg config's model and run one step on a tiny synthetic input.

For tests and benchmarks of configs (mmdet and mmseg ship the same kind of helpers in
``mmdet.testing``): no pretrained weights, no datasets, seconds on a CPU.
"""
from .smoke import build_model, demo_batch, disable_pretrained, limit_rois, loss_step, predict_step

__all__ = ['build_model', 'demo_batch', 'disable_pretrained', 'limit_rois', 'loss_step',
           'predict_step']
