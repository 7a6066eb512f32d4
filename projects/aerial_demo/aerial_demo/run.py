"""Prepare a demo config and train + evaluate it through the mmengine Runner.

This is what mmdet/mmseg ``tools/train.py`` do (``Runner.from_cfg(cfg).train()``), plus the
knobs the demo and the study turn: the norm (via :func:`lcn_mm.apis.swap_norms`), batch size,
schedule length, seed, a subset of the val split, and an optional evaluation of the untrained
model (the trivial detection baseline).
"""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Optional

import torch
from mmengine.config import Config
from mmengine.hooks import Hook

from lcn_mm.apis.config import load_config, setup_scope
from lcn_mm.apis.norm_swap import swap_norms

__all__ = ['prepare_cfg', 'train_and_evaluate', 'MetricsRecorder', 'ProgressHook']


def _scale_schedule(cfg: Config, max_iters: int) -> None:
    """Set the iteration count and stretch warmup/cosine and checkpointing to it."""
    old = cfg.train_cfg.max_iters
    cfg.train_cfg.max_iters = max_iters
    cfg.train_cfg.val_interval = max_iters
    scale = max_iters / old
    for sched in cfg.get('param_scheduler') or []:
        begin = min(max_iters - 1, round(sched.get('begin', 0) * scale))
        sched['begin'] = begin
        sched['end'] = min(max_iters, max(begin + 1, round(sched.get('end', old) * scale)))
    if 'checkpoint' in cfg.default_hooks:
        cfg.default_hooks.checkpoint.interval = max_iters


def prepare_cfg(config: str, work_dir: str, norm_cfg: Optional[dict] = None,
                batch_size: Optional[int] = None, max_iters: Optional[int] = None,
                seed: int = 0, val_images: Optional[int] = None, lr: Optional[float] = None,
                load_from: Optional[str] = None, log_interval: int = 10) -> Config:
    """Load a demo config and set what a run varies.

    Args:
        config: config path (relative to the repository root or absolute).
        work_dir: where logs and the final checkpoint go.
        norm_cfg: swap every norm of the model to this (``swap_norms``); None keeps the
            config's (LCN).
        batch_size: training batch size; the number of images seen stays the same only if the
            caller scales ``max_iters`` (the study does).
        max_iters: training iterations; warmup/cosine schedule and the checkpoint follow.
        seed: ``randomness.seed`` (model init, sampling, augmentation).
        val_images: evaluate on the first N val images only (tests).
        lr: optimizer learning rate.
        load_from: initial weights (e.g. a converted GN checkpoint for the transfer run).
        log_interval: iterations between progress lines.
    """
    cfg = load_config(str(config))
    setup_scope(cfg)
    cfg.work_dir = str(work_dir)
    if norm_cfg is not None:
        swap_norms(cfg, copy.deepcopy(norm_cfg))
    if batch_size is not None:
        cfg.train_dataloader.batch_size = batch_size
    # an endless sampler: no "end of dataloader" restarts in iteration-based training
    cfg.train_dataloader.sampler = dict(type='InfiniteSampler', shuffle=True)
    if max_iters is not None:
        _scale_schedule(cfg, max_iters)
    cfg.randomness = dict(seed=seed, deterministic=False)
    if val_images is not None:
        for key in ('val_dataloader', 'test_dataloader'):
            cfg[key] = copy.deepcopy(cfg[key])
            cfg[key].dataset.indices = val_images
    if lr is not None:
        cfg.optim_wrapper.optimizer.lr = lr
    cfg.load_from = load_from
    cfg.default_hooks.logger.interval = log_interval
    return cfg


class MetricsRecorder(Hook):
    """Keep the metrics of every validation run (``after_val_epoch``) in ``self.history``."""

    priority = 'VERY_LOW'

    def __init__(self, eval_untrained: bool = False) -> None:
        self.eval_untrained = eval_untrained
        self.history: list[dict] = []
        self.untrained: Optional[dict] = None

    def before_train(self, runner) -> None:
        if self.eval_untrained:  # the model is initialised (init_weights) by now
            runner.logger.info('evaluating the untrained model (trivial baseline)')
            runner.val_loop.run()
            self.untrained = self.history.pop()

    def after_val_epoch(self, runner, metrics=None) -> None:
        kept = {}
        for key, value in (metrics or {}).items():
            try:
                kept[key] = float(value)
            except (TypeError, ValueError):
                pass  # e.g. COCO's per-class tables
        self.history.append(kept)


def _clock(seconds: float) -> str:
    return f'{int(seconds) // 60}:{int(seconds) % 60:02d}'


class ProgressHook(Hook):
    """A line at most every ``interval_s`` seconds while training or validating, with an ETA.

    mmengine's logger prints every N iterations, which says nothing for minutes when a step is
    slow and nothing at all during validation; this prints by the clock.
    """

    priority = 'VERY_LOW'

    def __init__(self, label: str, interval_s: float = 10.0) -> None:
        self.label, self.interval_s = label, interval_s
        self._last = self._t0 = time.perf_counter()

    def _due(self) -> bool:
        now = time.perf_counter()
        if now - self._last < self.interval_s:
            return False
        self._last = now
        return True

    def before_train(self, runner) -> None:
        self._t0 = self._last = time.perf_counter()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        done, total = runner.iter + 1, runner.max_iters
        if done == total or self._due():
            elapsed = time.perf_counter() - self._t0
            loss = (outputs or {}).get('loss')
            loss_text = f', loss {loss.item():.3f}' if loss is not None else ''
            print(f'[{self.label}] train {done}/{total} ({100 * done // total}%), '
                  f'{elapsed / done:.2f} s/it{loss_text}, elapsed {_clock(elapsed)}, '
                  f'ETA {_clock(elapsed / done * (total - done))} + validation', flush=True)

    def before_val_epoch(self, runner) -> None:
        self._val_t0 = time.perf_counter()

    def after_val_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        total = len(runner.val_dataloader)
        if batch_idx + 1 == total or self._due():
            elapsed = time.perf_counter() - self._val_t0
            eta = elapsed / (batch_idx + 1) * (total - batch_idx - 1)
            print(f'[{self.label}] validation batch {batch_idx + 1}/{total}, '
                  f'ETA {_clock(eta)}', flush=True)


def train_and_evaluate(cfg: Config, eval_untrained: bool = False,
                       threads: Optional[int] = None, label: Optional[str] = None) -> dict:
    """Build the Runner, train, validate at the end; return metrics and timing.

    ``label`` turns on clock-based progress lines (:class:`ProgressHook`) prefixed with it.

    Returns:
        ``{'metrics': {...}, 'untrained': {...} or None, 'train_s': ..., 'checkpoint': path}``;
        also written to ``<work_dir>/metrics.json``.
    """
    from mmengine.runner import Runner
    if threads:
        torch.set_num_threads(threads)
    runner = Runner.from_cfg(cfg)
    recorder = MetricsRecorder(eval_untrained)
    runner.register_hook(recorder)
    if label:
        runner.register_hook(ProgressHook(label))
    t0 = time.perf_counter()
    runner.train()
    elapsed = time.perf_counter() - t0
    if not recorder.history:
        raise RuntimeError('no validation ran at the end of training')
    ckpt = Path(cfg.work_dir) / f'iter_{cfg.train_cfg.max_iters}.pth'
    out = dict(metrics=recorder.history[-1], untrained=recorder.untrained, train_s=elapsed,
               checkpoint=str(ckpt) if ckpt.exists() else None)
    Path(cfg.work_dir, 'metrics.json').write_text(json.dumps(out, indent=1))
    return out
