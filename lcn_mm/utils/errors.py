"""Bad input -> one clear line on stderr and exit code 2, for the command-line tools.

The tools run their ``main`` through :func:`run_cli`. Errors raised by :class:`UserInputError`
and the usual suspects of bad input (missing/malformed configs, unknown norm types, group
counts that do not divide channels, unreadable images or checkpoints, non-finite values caught
by ``LCN(check_finite=True)``) are printed as ``error: <message>`` without a traceback;
``--debug`` or ``LCN_MM_DEBUG=1`` shows the traceback. Anything else (a bug, not bad input)
keeps its full traceback.
"""
from __future__ import annotations

import os
import pickle
import sys
import zipfile
from typing import Any, Callable, Iterable, Iterator, MutableMapping, Optional

__all__ = ['UserInputError', 'run_cli', 'registered_norm_names', 'check_norm_types',
           'check_checkpoint', 'EXIT_BAD_INPUT']

#: Exit status for bad input (argparse uses 2 for bad arguments as well).
EXIT_BAD_INPUT = 2


class UserInputError(Exception):
    """Bad input (file, config, option) that the user can fix; reported without a traceback."""


#: Exception classes reported as bad input even when not wrapped in UserInputError.
_INPUT_ERRORS = (UserInputError, FileNotFoundError, IsADirectoryError, PermissionError,
                 FloatingPointError)


def _debug_requested(argv: Iterable[str]) -> bool:
    return '--debug' in argv or os.environ.get('LCN_MM_DEBUG', '') not in ('', '0')


def _one_line(exc: BaseException, limit: int = 600) -> str:
    msg = ' '.join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, KeyError) and msg.startswith("'") and msg.endswith("'"):
        msg = msg[1:-1]  # KeyError reprs its message
    return msg if len(msg) <= limit else msg[:limit] + ' ...'


def run_cli(main: Callable[[], Any], argv: Optional[list] = None) -> None:
    """Call ``main()``; report bad input as one line and exit with :data:`EXIT_BAD_INPUT`."""
    argv = sys.argv[1:] if argv is None else argv
    if _debug_requested(argv):
        main()
        return
    try:
        main()
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        raise SystemExit(130)
    except _INPUT_ERRORS as exc:
        print(f'error: {_one_line(exc)}', file=sys.stderr)
        print('(rerun with --debug or LCN_MM_DEBUG=1 for the traceback)', file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


# --------------------------------------------------------------------------- configs


def load_config_checked(path: str, loader: Callable[[str], Any]) -> Any:
    """``loader(path)`` with missing or malformed config files turned into UserInputError."""
    if '::' not in path and not os.path.isfile(path):
        raise UserInputError(f'config file not found: {path}')
    try:
        return loader(path)
    except UserInputError:
        raise
    except FileNotFoundError as exc:  # a missing _base_ or pkg:: path
        raise UserInputError(f'config {path}: {_one_line(exc)}') from exc
    except Exception as exc:  # SyntaxError, NameError, KeyError, ... while parsing
        raise UserInputError(
            f'config {path} is malformed: {type(exc).__name__}: {_one_line(exc)}') from exc


def _is_norm_class(cls: Any) -> bool:
    from torch import nn
    from torch.nn.modules.batchnorm import _BatchNorm
    from torch.nn.modules.instancenorm import _InstanceNorm
    return isinstance(cls, type) and issubclass(
        cls, (_BatchNorm, _InstanceNorm, nn.GroupNorm, nn.LayerNorm))


def registered_norm_names(scope: Optional[str] = None) -> list[str]:
    """Names of the norm layers ``norm_cfg=dict(type=...)`` can build in ``scope``."""
    import mmcv.cnn  # noqa: F401  registers BN/GN/LN/IN/SyncBN
    from mmengine.registry import MODELS, DefaultScope
    names = set()
    with DefaultScope.overwrite_default_scope(scope):
        with MODELS.switch_scope_and_registry(scope) as registry:
            node = registry
            while node is not None:
                names.update(n for n, c in node.module_dict.items() if _is_norm_class(c))
                node = node.parent
    return sorted(names)


def _norm_cfgs(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(node, MutableMapping):
        for key, value in node.items():
            sub = f'{path}.{key}'
            if 'norm_cfg' in str(key) and isinstance(value, MutableMapping) and 'type' in value:
                yield sub, value['type']
            yield from _norm_cfgs(value, sub)
    elif isinstance(node, (list, tuple)):
        for i, item in enumerate(node):
            yield from _norm_cfgs(item, f'{path}[{i}]')


def check_norm_types(cfg: MutableMapping) -> None:
    """Raise UserInputError naming every ``*norm_cfg.type`` in ``cfg.model`` not registered."""
    scope = cfg.get('default_scope')
    known = registered_norm_names(scope)
    bad = [(path, t) for path, t in _norm_cfgs(cfg.get('model', {}), 'model')
           if isinstance(t, str) and t not in known]
    if bad:
        where = ', '.join(f'{path}.type={t!r}' for path, t in bad[:4])
        more = f' (and {len(bad) - 4} more)' if len(bad) > 4 else ''
        raise UserInputError(
            f'unknown norm type {bad[0][1]!r} in {where}{more}; registered norms: '
            f'{", ".join(known)} (LCN/PN/LNCHW need `import lcn_mm` or custom_imports)')


# --------------------------------------------------------------------------- checkpoints


def check_checkpoint(path: str, model: Any = None, what: str = 'checkpoint') -> dict:
    """Load ``path`` on CPU and check it fits ``model``; return the checkpoint dict.

    Raises UserInputError if the file is missing, unreadable (truncated, not a PyTorch file) or
    its ``state_dict`` shares no keys with the model, misses model keys or has tensors of the
    wrong shape. (mmengine loads non-strictly and only logs such mismatches.)
    """
    import torch
    if '://' in path:  # remote: leave it to mmengine
        return {}
    if not os.path.isfile(path):
        raise UserInputError(f'{what} not found: {path}')
    try:
        try:
            ckpt = torch.load(path, map_location='cpu', weights_only=False, mmap=True)
        except RuntimeError as exc:  # mmap needs the zip format; retry for legacy files
            if 'mmap' not in str(exc):
                raise
            ckpt = torch.load(path, map_location='cpu', weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile,
            ValueError, OSError, AttributeError, ImportError, IndexError) as exc:
        raise UserInputError(f'cannot read {what} {path} (truncated or not a PyTorch '
                             f'checkpoint): {type(exc).__name__}: {_one_line(exc, 200)}'
                             ) from exc
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise UserInputError(f'{what} {path} has no state_dict (got {type(ckpt).__name__})')
    if model is None:
        return ckpt
    from mmengine.model import is_model_wrapper
    if is_model_wrapper(model):
        model = model.module
    state = {k[7:] if k.startswith('module.') else k: v for k, v in state.items()}
    expected = model.state_dict()
    common = set(state) & set(expected)
    missing = [k for k in expected if k not in state]
    wrong = [f'{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}' for k in sorted(common)
             if hasattr(state[k], 'shape') and tuple(state[k].shape) != tuple(expected[k].shape)]
    if not common:
        raise UserInputError(f'{what} {path} does not match the model: none of its '
                             f'{len(state)} keys is a model key (e.g. {next(iter(state), "-")!r} '
                             f'vs {next(iter(expected), "-")!r})')
    if missing or wrong:
        parts = []
        if missing:
            parts.append(f'{len(missing)} model keys missing (e.g. {", ".join(missing[:3])})')
        if wrong:
            parts.append(f'{len(wrong)} shape mismatches (e.g. {"; ".join(wrong[:3])})')
        raise UserInputError(f'{what} {path} does not match the model: ' + ', '.join(parts))
    return ckpt


def _register_hook() -> type:
    from mmengine.hooks import Hook
    from mmengine.registry import HOOKS
    from mmengine.runner import find_latest_checkpoint

    @HOOKS.register_module(name='CheckCheckpointHook', force=True)
    class CheckCheckpointHook(Hook):
        """Before the run loads a checkpoint, check it with :func:`check_checkpoint`.

        Args:
            checkpoint: the file; ``None`` means the latest in the work dir (``--resume``).
            strict: also require that it fits the model (every key, every shape); otherwise
                only that it can be read (fine-tuning from ``load_from`` may load a subset).
            what: how to name it in the message.
        """

        priority = 'VERY_HIGH'

        def __init__(self, checkpoint: Optional[str] = None, strict: bool = True,
                     what: str = 'checkpoint') -> None:
            self.checkpoint, self.strict, self.what = checkpoint, strict, what

        def before_run(self, runner) -> None:
            path = self.checkpoint or find_latest_checkpoint(runner.work_dir)
            if path:
                check_checkpoint(path, runner.model if self.strict else None, self.what)

    return CheckCheckpointHook


CheckCheckpointHook = _register_hook()
__all__.append('CheckCheckpointHook')
