from . import library  # noqa: F401  (registers torch.ops.lcn_mm.local_context_norm)
from .local_context_norm import local_context_norm, normalize_window_size

__all__ = ['local_context_norm', 'normalize_window_size']
