"""Robustness of the study's trained models to photometric shifts, and test-time LCN.

* :func:`eval_shifts` — each study checkpoint evaluated on its val split, clean and under each
  seeded shift of :mod:`.shifts` (a ``PhotometricShift`` inserted right after the image is
  loaded); one record per (run, shift).
* :func:`test_time_lcn` — GN-trained segmentation models evaluated on the whole stitched scene
  as GN and with every GN replaced by LCN of window ``k`` at test time only (same groups, same
  weights), next to the LCN-trained models; one record per (run, evaluated norm).

Both append to committed JSON-lines files and skip what is recorded (``key``), so they can be
resumed; every record carries :func:`.records.environment` (machine, load, versions, commit,
command) and identifies its source run by the study's ``run_key``.
"""
from __future__ import annotations

import copy
import json
import numbers
import os
import time
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import torch

from . import shifts as _shifts  # noqa: F401  (registers PhotometricShift)
from .records import append_jsonl, environment
from .run import prepare_cfg
from .study import run_key
from .tasks import REPO_ROOT, TASKS, norm_cfg_for, percent

__all__ = ['ROBUSTNESS_RESULTS', 'TEST_TIME_LCN_RESULTS', 'SCENES', 'recorded_keys',
           'eval_shifts', 'scene_miou', 'test_time_lcn']

ROBUSTNESS_RESULTS = 'docs/results/robustness.jsonl'
TEST_TIME_LCN_RESULTS = 'docs/results/test_time_lcn.jsonl'
#: Whole scenes the tiles of a segmentation task were cut from (docs/data.md).
SCENES = {'seg': 'data/spacenet_seg/buildings', 'roads': 'data/spacenet_seg/roads'}
#: What a derived record copies from its source study record.
_SOURCE_FIELDS = ('task', 'norm', 'norm_cfg', 'seed', 'batch_size', 'iters', 'tag', 'lr',
                  'load_from', 'config')


def recorded_keys(path: str) -> set:
    """The ``key`` of every complete record in a JSON-lines file (missing file: none)."""
    p = Path(path)
    if not p.exists():
        return set()
    keys = set()
    for line in p.read_text().splitlines():
        try:
            keys.add(json.loads(line)['key'])
        except (json.JSONDecodeError, KeyError):
            continue  # a truncated line of a killed run
    return keys


def _checkpoint(rec: dict) -> Optional[Path]:
    ckpt = rec.get('checkpoint')
    if not ckpt:
        return None
    path = Path(ckpt) if Path(ckpt).is_absolute() else REPO_ROOT / ckpt
    return path if path.exists() else None


def _pipeline(dataset):
    """The ``Compose`` of a (possibly wrapped) mmengine dataset."""
    while not hasattr(dataset, 'pipeline') and hasattr(dataset, 'dataset'):
        dataset = dataset.dataset
    return dataset.pipeline


def _derived(src: dict, key: dict, **fields) -> dict:
    """A record derived from study record ``src``: its identity, ``fields``, environment."""
    return dict({k: src.get(k) for k in _SOURCE_FIELDS}, key=json.dumps(key, sort_keys=True),
                source=run_key(src), source_metrics=src.get('metrics'),
                checkpoint=src.get('checkpoint'), **fields, **environment(REPO_ROOT))


def eval_shifts(records: Iterable[dict], out: str, work_root: str,
                shift_names: Optional[list] = None, shift_seed: int = 0,
                val_images: Optional[int] = None, threads: Optional[int] = None) -> list[dict]:
    """Evaluate each record's checkpoint clean (``shift='none'``) and under each shift.

    One Runner per checkpoint: the val loop is built once and its pipeline gets the shift
    transform swapped in before each evaluation (the checkpoint is loaded once).
    """
    from mmengine.runner import Runner

    from .shifts import SHIFTS, PhotometricShift
    names = ['none'] + list(shift_names or SHIFTS)
    done = recorded_keys(out)
    new = []
    if threads:
        torch.set_num_threads(threads)
    for src in records:
        ckpt = _checkpoint(src)
        if ckpt is None:
            print(f'eval_shifts: skip (no checkpoint on this machine): {run_key(src)}')
            continue
        keys = {s: dict(source=run_key(src), shift=s, shift_seed=shift_seed,
                        params={}, val_images=val_images) for s in names}
        todo = [s for s in names if json.dumps(keys[s], sort_keys=True) not in done]
        if not todo:
            continue
        name = f"{src['task']}_{src['norm']}_s{src['seed']}_b{src['batch_size']}_i{src['iters']}"
        cfg = prepare_cfg(REPO_ROOT / src['config'], str(Path(work_root) / name),
                          norm_cfg=src['norm_cfg'], seed=src['seed'], val_images=val_images,
                          load_from=str(ckpt), log_interval=1000)
        runner = Runner.from_cfg(cfg)
        compose = _pipeline(runner.val_loop.dataloader.dataset)
        base = list(compose.transforms)
        at = next(i for i, t in enumerate(base) if type(t).__name__ == 'LoadImageFromFile') + 1
        for i, shift in enumerate(todo):
            extra = [] if shift == 'none' else [PhotometricShift(shift, seed=shift_seed)]
            compose.transforms = base[:at] + extra + base[at:]
            load_start = round(os.getloadavg()[0], 2)
            t0 = time.perf_counter()
            # first: Runner.val() (hooks' before_run, checkpoint loading); then the loop alone
            raw = runner.val() if i == 0 else runner.val_loop.run()
            # numpy scalars too (mmseg's IoUMetric gives np.float32, which is not a float)
            raw = {k: float(v) for k, v in raw.items() if isinstance(v, numbers.Real)}
            missing = [k for k in TASKS[src['task']].metrics if k not in raw]
            if missing:
                raise KeyError(f'eval_shifts: the val loop gave no {missing} (got {sorted(raw)})')
            metrics = {label: percent(k, raw[k]) for k, label in TASKS[src['task']].metrics.items()}
            rec = _derived(src, keys[shift], shift=shift, shift_params={}, shift_seed=shift_seed,
                           val_images=val_images, metrics=metrics, raw_metrics=raw,
                           wall_s=round(time.perf_counter() - t0, 1),
                           loadavg_1m_start=load_start)
            append_jsonl(out, rec)
            new.append(rec)
            print(f"eval_shifts: {src['task']} {src['norm']} seed {src['seed']} {shift}: "
                  f'{metrics}', flush=True)
    return new


def _iou_percent(pred: np.ndarray, lab: np.ndarray, num_classes: int = 2) -> float:
    """mIoU (%) as mmseg's IoUMetric: classes absent from both prediction and labels skipped."""
    ious = []
    for c in range(num_classes):
        union = np.logical_or(pred == c, lab == c).sum()
        if union:
            ious.append(np.logical_and(pred == c, lab == c).sum() / union)
    return float(np.mean(ious) * 100)


def scene_miou(model: torch.nn.Module, img: np.ndarray, lab: np.ndarray,
               val_x0: int) -> dict:
    """mIoU of ``model`` on the whole scene and on its val strip (columns >= ``val_x0``; the
    rest was training data)."""
    from .visualize import norm_features_and_prediction
    _, pred = norm_features_and_prediction(model, img)
    return {'mIoU scene': _iou_percent(pred, lab),
            'mIoU val strip': _iou_percent(pred[:, val_x0:], lab[:, val_x0:])}


def _build(config: str, norm_cfg: dict, ckpt: Path) -> torch.nn.Module:
    """The config's model with ``norm_cfg`` everywhere and the checkpoint's weights (strict:
    GN keys fill LCN layers through :mod:`lcn_mm.layers.bn_gn_keys`)."""
    from lcn_mm.testing import build_model
    model = build_model(prepare_cfg(REPO_ROOT / config, 'unused', norm_cfg=norm_cfg),
                        init=False)
    sd = torch.load(ckpt, map_location='cpu', weights_only=False)
    model.load_state_dict(sd.get('state_dict', sd), strict=True)
    return model.eval()


def test_time_lcn(records: Iterable[dict], out: str, windows: list[int],
                  threads: Optional[int] = None) -> list[dict]:
    """GN-trained records: whole-scene mIoU as GN and with LCN(window k) swapped in for every
    GN; LCN-trained records: as trained. Other norms are ignored."""
    from .visualize import stitch_scene
    if threads:
        torch.set_num_threads(threads)
    done = recorded_keys(out)
    new = []
    scenes: dict = {}
    for src in records:
        ckpt = _checkpoint(src)
        if src['task'] not in SCENES or src['norm'] not in ('GN', 'LCN') or ckpt is None:
            continue
        if src['task'] not in scenes:
            scenes[src['task']] = stitch_scene(REPO_ROOT / SCENES[src['task']])
        img, lab, val_x0 = scenes[src['task']]
        scene = f'{Path(SCENES[src["task"]]).name} {img.shape[0]}x{img.shape[1]}'
        evals = [(src['norm'], src['norm_cfg'].get('window_size'), src['norm_cfg'])]
        if src['norm'] == 'GN':
            groups = src['norm_cfg'].get('num_groups')
            evals += [('LCN', k, norm_cfg_for('LCN', window_size=k, num_groups=groups))
                      for k in windows]
        for test_norm, window, cfg in evals:
            key = dict(source=run_key(src), scene=scene, test_norm=test_norm, window=window)
            if json.dumps(key, sort_keys=True) in done:
                continue
            load_start = round(os.getloadavg()[0], 2)
            t0 = time.perf_counter()
            metrics = scene_miou(_build(src['config'], copy.deepcopy(cfg), ckpt), img, lab,
                                 val_x0)
            rec = _derived(src, key, scene=scene, trained_norm=src['norm'],
                           test_norm=test_norm, window=window, test_norm_cfg=cfg,
                           metrics=metrics, wall_s=round(time.perf_counter() - t0, 1),
                           loadavg_1m_start=load_start)
            append_jsonl(out, rec)
            new.append(rec)
            print(f"test_time_lcn: {src['task']} {src['norm']} seed {src['seed']} as "
                  f'{test_norm} window {window}: {metrics}', flush=True)
    return new
