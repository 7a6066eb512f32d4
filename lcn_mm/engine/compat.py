"""Compatibility fixes for running the OpenMMLab 2.x stack (mmengine 0.10.7) on torch >= 2.6.

The problem: torch 2.6 changed the default of ``torch.load`` to ``weights_only=True``.
mmengine 0.10.7 calls ``torch.load(filename, map_location=...)`` without ``weights_only`` in
``mmengine/runner/checkpoint.py`` and ``mmengine/utils/dl_utils/hub.py``, and the checkpoints
its Runner writes contain pickled Python objects (the ``message_hub`` state:
``mmengine.logging.HistoryBuffer`` with numpy arrays, and a dict of *functions*
``HistoryBuffer.min/max/...`` that pickle as ``builtins.getattr(HistoryBuffer, 'min')``).
So ``resume=True``, ``load_from=...`` and ``tools/test.py`` fail with::

    _pickle.UnpicklingError: Weights only load failed ...
    Unsupported global: GLOBAL mmengine.logging.history_buffer.HistoryBuffer

Why not ``torch.serialization.add_safe_globals``: the allow-list would have to contain
``builtins.getattr`` (which defeats most of what ``weights_only`` protects against) and any
statistics function a user registers on ``HistoryBuffer``, so it is open-ended. Why not
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``: it disables the safe default for *every* ``torch.load``
in the process.

What :func:`patch_torch_load` does instead is what mmengine itself does on its main branch
(PR #1670, not released as of 0.10.7): calls to ``torch.load`` *made from mmengine's own
modules* that do not pass ``weights_only`` get ``weights_only=False``, i.e. the pre-2.6
behaviour for mmengine checkpoints. Every other caller keeps torch's default. As before
torch 2.6, only load mmengine checkpoints you trust.

Importing this module imports neither torch nor mmengine; :func:`apply` imports torch only.
Set ``LCN_MM_NO_TORCH_LOAD_PATCH=1`` to opt out.
"""
import functools
import os
import sys
from typing import Any, Callable, Tuple

__all__ = ['apply', 'patch_torch_load', 'unpatch_torch_load', 'torch_load_is_patched']

_PATCH_MARK = '_lcn_mm_compat_original'
#: Modules whose ``torch.load`` calls get the pre-torch-2.6 default (``weights_only=False``).
TRUSTED_CALLER_PREFIXES: Tuple[str, ...] = ('mmengine.',)
OPT_OUT_ENV = 'LCN_MM_NO_TORCH_LOAD_PATCH'


def _torch_version() -> Tuple[int, int]:
    import torch
    major, minor = torch.__version__.split('+')[0].split('.')[:2]
    return int(major), int(''.join(c for c in minor if c.isdigit()) or 0)


def _make_patched_load(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``torch.load`` so that callers inside mmengine default to ``weights_only=False``."""

    @functools.wraps(original)
    def load(*args: Any, **kwargs: Any) -> Any:
        if 'weights_only' not in kwargs and kwargs.get('pickle_module') is None:
            caller = sys._getframe(1).f_globals.get('__name__', '')
            if caller.startswith(TRUSTED_CALLER_PREFIXES):
                kwargs['weights_only'] = False
        return original(*args, **kwargs)

    setattr(load, _PATCH_MARK, original)
    return load


def torch_load_is_patched() -> bool:
    """Return True if :func:`patch_torch_load` is active."""
    import torch
    return hasattr(torch.load, _PATCH_MARK)


def patch_torch_load() -> bool:
    """Make mmengine's own ``torch.load`` calls work on torch >= 2.6 (see module docstring).

    Idempotent. Does nothing on torch < 2.6 (old default already ``weights_only=False``).

    Returns:
        True if the patch is active after the call.
    """
    import torch
    if torch_load_is_patched():
        return True
    if _torch_version() < (2, 6):
        return False
    torch.load = _make_patched_load(torch.load)
    return True


def unpatch_torch_load() -> None:
    """Undo :func:`patch_torch_load` (mainly for tests)."""
    import torch
    original = getattr(torch.load, _PATCH_MARK, None)
    if original is not None:
        torch.load = original


def apply() -> None:
    """Apply all compatibility fixes; called by ``import lcn_mm``. Safe to call repeatedly.

    Honours ``LCN_MM_NO_TORCH_LOAD_PATCH=1`` (skip the ``torch.load`` patch).
    """
    if os.environ.get(OPT_OUT_ENV, '').lower() not in ('1', 'true', 'yes'):
        patch_torch_load()
