"""Runtime pieces for mmengine's Runner: crash-safe checkpoint hooks, CPU AMP and CPU DDP.

``compat`` needs only PyTorch; the rest registers into mmengine's root registries (HOOKS,
OPTIM_WRAPPERS, MODEL_WRAPPERS) when mmengine is installed.
"""
from . import compat

try:
    import mmengine  # noqa: F401
except ImportError:  # plain PyTorch use
    pass
else:
    from . import dist, hooks, optim  # noqa: F401  (registrations)

__all__ = ['compat']
