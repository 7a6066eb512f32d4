"""A tiny LCN model and dataset for runner-level checks (distributed, resume, AMP, bad input).

Importing this module registers ``'LCNToyNet'`` and ``'LCNToyDataset'`` in mmengine's root
``MODELS``/``DATASETS`` registries (so mmdet- and mmseg-scoped configs find them too).
``tests/configs/lcn_toy.py`` trains them through ``tools/train.py`` in a few seconds on CPU.

The model is conv -> LCN -> ReLU -> conv with a per-pixel regression loss that is a **mean
over the batch**, so DDP's gradient averaging over ranks equals one process on the global batch.
The dataset is a fixed, seeded set of random images and targets (no files, no augmentation).
"""
from __future__ import annotations

import os
import os.path as osp
import signal
from typing import Optional

import torch
import torch.nn.functional as F
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import BaseModel, is_model_wrapper
from mmengine.registry import DATASETS, HOOKS, MODELS
from torch import nn
from torch.utils.data import Dataset

__all__ = ['LCNToyNet', 'LCNToyDataset', 'LCNToyHook']


@MODELS.register_module(name='LCNToyNet', force=True)
class LCNToyNet(BaseModel):
    """conv3x3 -> norm -> ReLU -> conv3x3, trained to regress a target map (MSE, batch mean).

    Args:
        in_channels, mid_channels, out_channels: channel widths.
        norm_cfg: ``dict(type=..., ...)`` built with mmcv's ``build_norm_layer`` (default LCN
            with 2 groups and a 5x5 window).
        data_preprocessor: passed to ``BaseModel`` (default: moves data to the device).
    """

    def __init__(self, in_channels: int = 3, mid_channels: int = 8, out_channels: int = 2,
                 norm_cfg: Optional[dict] = None, data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        from mmcv.cnn import build_norm_layer
        norm_cfg = norm_cfg or dict(type='LCN', num_groups=2, window_size=5)
        self.conv1 = nn.Conv2d(in_channels, mid_channels, 3, padding=1)
        _, self.norm = build_norm_layer(norm_cfg, mid_channels)
        self.conv2 = nn.Conv2d(mid_channels, out_channels, 3, padding=1)

    def features(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.norm(self.conv1(inputs))))

    def forward(self, inputs: torch.Tensor, targets: Optional[torch.Tensor] = None,
                mode: str = 'tensor'):
        out = self.features(inputs)
        if mode == 'loss':
            # Mean over every element of the batch: DDP averages gradients over ranks.
            return dict(loss=F.mse_loss(out.float(), targets.float()))
        if mode == 'predict':
            return [o for o in out]
        return out


@DATASETS.register_module(name='LCNToyDataset', force=True)
class LCNToyDataset(Dataset):
    """``length`` seeded random (image, target) pairs of shape (3, size, size) / (2, size, size).

    Items are ``dict(inputs=..., targets=...)``; use ``collate_fn=dict(type='default_collate')``.
    """

    def __init__(self, length: int = 32, size: int = 16, seed: int = 0,
                 in_channels: int = 3, out_channels: int = 2,
                 nan_index: Optional[int] = None) -> None:
        g = torch.Generator().manual_seed(seed)
        # Non-zero mean and per-sample brightness: the case a local norm is for.
        scale = 1 + 4 * torch.rand(length, 1, 1, 1, generator=g)
        self.inputs = 10 + scale * torch.randn(length, in_channels, size, size, generator=g)
        self.targets = torch.randn(length, out_channels, size, size, generator=g)
        if nan_index is not None:  # a corrupt sample, for the non-finite input checks
            self.inputs[nan_index, 0, 0, 0] = float('nan')
        self.metainfo = dict(classes=('toy',))

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, idx: int) -> dict:
        return dict(inputs=self.inputs[idx], targets=self.targets[idx])


@HOOKS.register_module(name='LCNToyHook', force=True)
class LCNToyHook(Hook):
    """Test helper: dump each rank's final weights; optionally SIGKILL the run mid-training.

    After the run, every rank writes its model's ``state_dict`` to
    ``<work_dir>/params_rank<r>.pth`` (to compare ranks). If the environment variable
    ``LCN_TOY_KILL_AT_ITER=k`` is set, the process kills itself with SIGKILL right after
    iteration ``k`` (after that iteration's checkpoint, if any), as a preemption would.
    """

    priority = 'LOWEST'  # after CheckpointHook

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        kill_at = os.environ.get('LCN_TOY_KILL_AT_ITER')
        if kill_at and runner.iter + 1 == int(kill_at):
            os.kill(os.getpid(), signal.SIGKILL)

    def after_run(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()},
                   osp.join(runner.work_dir, f'params_rank{get_rank()}.pth'))


# ------------------------------------------------------------ running the tools in tests

#: The repository root (an editable install or a checkout) and the toy config.
REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TESTS_DIR = osp.join(REPO_ROOT, 'tests')
TOY_CONFIG = osp.join(TESTS_DIR, 'helpers', 'lcn_toy.py')


def tool_env(**extra: str) -> dict:
    """Environment for tool subprocesses: one OpenMP thread, gloo on loopback, repo importable."""
    env = dict(os.environ, OMP_NUM_THREADS='1', GLOO_SOCKET_IFNAME='lo',
               PYTHONPATH=os.pathsep.join(filter(None, [REPO_ROOT, TESTS_DIR,
                                                        os.environ.get('PYTHONPATH')])))
    env.pop('LCN_TOY_KILL_AT_ITER', None)
    env.pop('LCN_MM_DEBUG', None)
    env.update(extra)
    return env


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for torchrun's rendezvous)."""
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run_tool(args: list, env: Optional[dict] = None, timeout: float = 240):
    """Run ``python <args>`` from the repository root; return the CompletedProcess."""
    import subprocess
    import sys
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO_ROOT, env=env or tool_env())
