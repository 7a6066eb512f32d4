"""Distributed training without a GPU (``torchrun ... --launcher pytorch`` on CPU, gloo).

mmengine 0.10.7's ``pytorch`` launcher calls ``torch.cuda.set_device`` and wraps the model in
DDP with ``device_ids=[LOCAL_RANK]``; both fail on a CPU-only machine. On GPUs nothing here is
used. Without CUDA, :func:`prepare_cpu_distributed` (called by ``tools/train.py``/``test.py``)
initialises the gloo process group from torchrun's environment before the Runner does (the
Runner then skips its own ``init_dist``), and wraps the model in
``CPUDistributedDataParallel``, a ``MMDistributedDataParallel`` that drops ``device_ids`` for
CPU modules.

LCN has no batch statistics, so there is nothing to synchronise across ranks (no SyncBN): a
multi-process run is the single-process run on the global batch
(``tests/test_engine/test_distributed.py``).
"""
from __future__ import annotations

import datetime

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS

__all__ = ['CPUDistributedDataParallel', 'prepare_cpu_distributed']


@MODEL_WRAPPERS.register_module(name='CPUDistributedDataParallel', force=True)
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` that also takes CPU modules (drops ``device_ids``)."""

    def __init__(self, module, **kwargs) -> None:
        if all(p.device.type == 'cpu' for p in module.parameters()):
            kwargs.pop('device_ids', None)
            kwargs.pop('output_device', None)
        super().__init__(module=module, **kwargs)


def prepare_cpu_distributed(cfg: Config, launcher: str) -> bool:
    """Set up CPU (gloo) distributed training if ``launcher`` asks for it and there is no GPU.

    Returns whether it did. Only the ``pytorch`` launcher (torchrun) is supported on CPU;
    ``slurm``/``mpi`` on CPU raise ``SystemExit`` with a hint.
    """
    if launcher == 'none' or torch.cuda.is_available():
        return False
    if launcher != 'pytorch':
        raise SystemExit(f'--launcher {launcher} needs GPUs; on CPU-only machines start the '
                         'processes with torchrun and --launcher pytorch')
    dist_cfg = dict(cfg.get('env_cfg', {}).get('dist_cfg', {}))
    timeout = dist_cfg.get('timeout', 1800)
    if not torch_dist.is_initialized():
        # torchrun sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT (env:// rendezvous).
        torch_dist.init_process_group(backend='gloo',
                                      timeout=datetime.timedelta(seconds=timeout))
    if cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = dict(
            type='CPUDistributedDataParallel', broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    return True
