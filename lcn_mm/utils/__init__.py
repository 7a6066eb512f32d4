"""OpenMMLab glue around the LCN layer: norm swapping in configs and checkpoint conversion.

Importing it registers the ``'LCNPretrained'`` weight initializer (see :mod:`.checkpoint`),
the ``'AtomicCheckpointHook'`` and ``'CheckCheckpointHook'`` hooks, the ``'CPUAmpOptimWrapper'``
(bfloat16 ``--amp`` on CPU) and the ``'CPUDistributedDataParallel'`` model wrapper.
"""
from . import amp, atomic_checkpoint, dist, errors  # noqa: F401  (registrations)
from .checkpoint import LCNPretrainedInit, convert_state_dict
from .norm_swap import NORM_PRESETS, norm_cfg_from_args, norm_layer_summary, swap_norms

__all__ = ['LCNPretrainedInit', 'convert_state_dict', 'NORM_PRESETS', 'norm_cfg_from_args',
           'norm_layer_summary', 'swap_norms']
