"""lcn_mm: Local Context Normalization for OpenMMLab.

``import lcn_mm`` registers ``'LCN'``, ``'PN'`` and ``'LNCHW'`` as norm layers for mmcv's
``build_norm_layer`` plus the engine pieces (hooks, CPU AMP, CPU DDP) when mmengine is
installed (the op and modules need only PyTorch), and lets mmengine 0.10.7 load its own
checkpoints on torch >= 2.6.
"""
from .engine import compat
from .layers import LCN, LayerNormCHW, PositionalNorm
from .ops import local_context_norm
from .version import __version__

compat.apply()  # mmengine 0.10.7 checkpoints on torch >= 2.6 (see engine/compat.py)

try:
    import mmengine  # noqa: F401
except ImportError:  # plain PyTorch use: nothing to register into
    pass
else:
    from . import apis, registry  # noqa: F401  (norm layers, initializer)

__all__ = ['LCN', 'PositionalNorm', 'LayerNormCHW', 'local_context_norm', '__version__']
