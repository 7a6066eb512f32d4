"""Loading mmdet/mmseg configs for the tools and checking their norm types.

``load_config`` takes upstream ``mmdet::``/``mmseg::`` paths as ``_base_`` does; malformed or
missing files and unregistered norm types become :class:`UserInputError` (one line, exit 2).
"""
from __future__ import annotations

import importlib
import os
from typing import Any, Callable, Iterator, MutableMapping, Optional

from mmengine.config import Config
from mmengine.config.utils import _get_external_cfg_base_path, _get_package_and_cfg_path
from mmengine.utils import get_installed_path

from .errors import UserInputError, one_line

__all__ = ['SUPPORTED_SCOPES', 'load_config', 'setup_scope', 'registered_norm_names',
           'check_norm_types', 'ensure_custom_imports', 'model_norm_types']

#: default_scope -> package whose registries the Runner builds from.
SUPPORTED_SCOPES = {'mmdet': 'mmdet', 'mmseg': 'mmseg'}


def load_config(path: str) -> Config:
    """``Config.fromfile`` that also takes upstream paths such as ``mmdet::gn/x.py``.

    The ``pkg::`` form resolves inside the installed package (``<pkg>/.mim/configs``), as
    ``_base_`` does, so ``--norm`` can run upstream configs without copying them.
    A missing or malformed file raises :class:`UserInputError`.
    """
    def load(path: str) -> Config:
        if '::' in path:
            package, rel_path = _get_package_and_cfg_path(path)
            path = _get_external_cfg_base_path(get_installed_path(package), rel_path)
        return Config.fromfile(path)

    return _load_config_checked(path, load)


def ensure_custom_imports(cfg: MutableMapping) -> None:
    """Put ``lcn_mm`` into ``custom_imports``, so that the config a run saves in its work dir
    loads in a fresh process through upstream's own tools (``tools/test.py``,
    ``init_detector`` / ``init_model``, ``mim test``) that never import lcn_mm by hand."""
    custom = dict(cfg.get('custom_imports') or {})
    imports = custom.get('imports') or []
    imports = [imports] if isinstance(imports, str) else list(imports)
    if 'lcn_mm' not in imports:
        custom['imports'] = ['lcn_mm'] + imports
        custom.setdefault('allow_failed_imports', False)
        cfg['custom_imports'] = custom


def model_norm_types(cfg: MutableMapping) -> set[str]:
    """Type names of every ``*norm_cfg`` dict in ``cfg.model`` (``'mmdet.BN'`` -> ``'BN'``)."""
    return {t.rsplit('.', 1)[-1] for _, t in _norm_cfgs(cfg.get('model', {}), 'model')
            if isinstance(t, str)}


def setup_scope(cfg: Config) -> str:
    """Check the config's ``default_scope`` and do that codebase's pre-Runner setup."""
    scope = cfg.get('default_scope')
    if scope not in SUPPORTED_SCOPES:
        raise SystemExit(f'{cfg.filename}: default_scope={scope!r}; these tools run '
                         f'{sorted(SUPPORTED_SCOPES)} configs')
    importlib.import_module(SUPPORTED_SCOPES[scope])
    if scope == 'mmdet':  # what mmdet's tools/train.py and test.py do first
        from mmdet.utils import setup_cache_size_limit_of_dynamo
        setup_cache_size_limit_of_dynamo()
    return scope


def _load_config_checked(path: str, loader: Callable[[str], Any]) -> Any:
    """``loader(path)`` with missing or malformed config files turned into UserInputError."""
    if '::' not in path and not os.path.isfile(path):
        raise UserInputError(f'config file not found: {path}')
    try:
        return loader(path)
    except UserInputError:
        raise
    except FileNotFoundError as exc:  # a missing _base_ or pkg:: path
        raise UserInputError(f'config {path}: {one_line(exc)}') from exc
    except Exception as exc:  # SyntaxError, NameError, KeyError, ... while parsing
        raise UserInputError(
            f'config {path} is malformed: {type(exc).__name__}: {one_line(exc)}') from exc


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
