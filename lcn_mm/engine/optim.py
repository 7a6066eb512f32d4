"""``--amp`` on machines without a GPU: bfloat16 autocast on CPU.

mmengine's ``AmpOptimWrapper`` asserts a GPU/NPU/MLU (it is built around ``torch.cuda.amp``'s
``GradScaler``). ``CPUAmpOptimWrapper`` (registered in mmengine's root ``OPTIM_WRAPPERS``) runs
the forward pass under ``torch.autocast('cpu', dtype=torch.bfloat16)``. bfloat16 has float32's
exponent range, so no loss scaling is needed (nor done). Parameters, gradients and optimizer
state stay float32. LCN disables autocast inside its op and computes its statistics in float32
(returning the input's dtype), as GN does under autocast.

``tools/train.py --amp`` picks ``AmpOptimWrapper`` (float16, dynamic loss scale) when CUDA is
available and this wrapper otherwise (:func:`amp_optim_wrapper_type`).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Union

import torch
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS
from torch import nn

__all__ = ['CPUAmpOptimWrapper', 'amp_optim_wrapper_type']


@OPTIM_WRAPPERS.register_module(name='CPUAmpOptimWrapper', force=True)
class CPUAmpOptimWrapper(OptimWrapper):
    """``OptimWrapper`` with bfloat16 autocast on CPU (no loss scaling).

    Args:
        dtype: only ``'bfloat16'`` (CPU autocast supports nothing else usefully).
        loss_scale: accepted for config compatibility with ``AmpOptimWrapper`` and ignored.
        **kwargs: ``OptimWrapper`` arguments.
    """

    def __init__(self, dtype: Union[str, torch.dtype] = 'bfloat16', loss_scale=None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype, None)
        if dtype != torch.bfloat16:
            raise ValueError(f'CPUAmpOptimWrapper supports dtype=bfloat16 only, got {dtype}')
        self.cast_dtype = dtype

    @contextmanager
    def optim_context(self, model: nn.Module):
        with super().optim_context(model), torch.autocast('cpu', dtype=self.cast_dtype):
            yield


def amp_optim_wrapper_type() -> str:
    """The optimizer wrapper ``--amp`` uses on this machine."""
    return 'AmpOptimWrapper' if torch.cuda.is_available() else 'CPUAmpOptimWrapper'
