"""Norm-layer modules around :func:`lcn_mm.ops.local_context_norm` (pure PyTorch).

They subclass ``nn.GroupNorm`` (with their own ``__init__(num_features, ...)``, which mmcv's
``build_norm_layer`` calls as ``cls(num_features, **cfg)``) so that everything in the OpenMMLab
stack that recognises norm layers by ``isinstance`` treats them as norms: ``mmcv.cnn.is_norm``,
the ``norm_decay_mult`` rule of mmengine's optimizer constructor, ``constant_init`` through
``weight``/``bias`` of shape (C,); BN/GN checkpoints load into them under their own key names
(:mod:`.bn_gn_keys`).
"""
from __future__ import annotations

import logging
from typing import Optional

import torch
from torch import Tensor, nn

from ..ops import local_context_norm, normalize_window_size
from ..ops.local_context_norm import WindowSize
from .bn_gn_keys import enable_bn_gn_keys

__all__ = ['LCN', 'PositionalNorm', 'LayerNormCHW', 'default_num_groups']

#: Default window in feature-map pixels. The authors' 227x227 is global on almost every layer
#: of a detector, which silently turns LCN into GN; 63 stays local on the high-resolution
#: stages (C2-C4, P2-P4 at COCO scale: ~250-1000 image pixels of context) and becomes
#: global only on the coarsest maps, where the whole image is context anyway.
DEFAULT_WINDOW = 63


def _check_num_features(num_features: int) -> None:
    if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
        raise ValueError(f'num_features must be a positive int, got {num_features!r}')


def _check_eps(eps: float) -> None:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f'eps must be a number > 0, got {eps!r}')


#: Default number of groups: GroupNorm's 32 where 32 divides C, else the largest divisor of C
#: below 32 (so ``norm_cfg=dict(type='LCN')`` builds for every C: 48 -> 24, 3 -> 3, 200 -> 25).
DEFAULT_MAX_GROUPS = 32

_logger = logging.getLogger(__name__)
_reported_defaults: set = set()


def default_num_groups(num_features: int, max_groups: int = DEFAULT_MAX_GROUPS) -> int:
    """The largest divisor of ``num_features`` that is at most ``max_groups``."""
    return max(g for g in range(1, min(max_groups, num_features) + 1) if num_features % g == 0)


def _resolve_groups(num_features: int, num_groups: Optional[int],
                    channels_per_group: Optional[int]) -> int:
    """Turn ``num_groups`` or ``channels_per_group`` (or neither: the default) into a count."""
    if num_groups is not None and channels_per_group is not None:
        raise ValueError(
            'give at most one of num_groups (e.g. 32, as GroupNorm) or channels_per_group '
            f'(the authors\' parametrization), got num_groups={num_groups!r}, '
            f'channels_per_group={channels_per_group!r}')
    if num_groups is None and channels_per_group is None:
        groups = default_num_groups(num_features)
        if groups != DEFAULT_MAX_GROUPS and num_features not in _reported_defaults:
            _reported_defaults.add(num_features)
            _logger.warning('LCN: %d channels are not divisible by %d groups; using %d groups '
                            '(the largest divisor of %d up to %d; set num_groups to choose)',
                            num_features, DEFAULT_MAX_GROUPS, groups, num_features,
                            DEFAULT_MAX_GROUPS)
        return groups
    name, value = (('num_groups', num_groups) if num_groups is not None
                   else ('channels_per_group', channels_per_group))
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f'{name} must be a positive int, got {value!r}')
    if num_features % value != 0:
        raise ValueError(
            f'{name}={value} must divide num_features={num_features}; allowed values are '
            f'the divisors of {num_features}')
    return value if num_groups is not None else num_features // value


@enable_bn_gn_keys
class LCN(nn.GroupNorm):
    """Local Context Normalization (Ortiz et al., CVPR 2020).

    Normalizes each element with the statistics of its channel group inside a ``window_size``
    window centred on it (clipped at the borders). With a window covering the whole map it
    is exactly GroupNorm, which it dispatches to.

    Args:
        num_features: channels C of the input (N, C, H, W).
        num_groups: groups of consecutive channels. Default (neither this nor
            ``channels_per_group``): 32 as GN where 32 divides C, else the largest divisor of
            C below 32 (logged once per C).
        channels_per_group: alternative to ``num_groups`` (the authors' code used 2).
        window_size: int or (kh, kw) in feature-map pixels, each >= 1.
        eps: added to the variance.
        affine: learn per-channel ``weight`` and ``bias`` of shape (C,).
        detach_stats: stop the gradient through the statistics, as the authors' code did
            (for comparison only; the default is the true gradient).
        check_finite: raise ``FloatingPointError`` on NaN/Inf input instead of propagating it
            (costs one extra pass over the input; for debugging diverging runs).
    """

    _abbr_ = 'lcn'

    def __init__(self, num_features: int, num_groups: Optional[int] = None,
                 channels_per_group: Optional[int] = None,
                 window_size: WindowSize = DEFAULT_WINDOW, eps: float = 1e-5,
                 affine: bool = True, detach_stats: bool = False, check_finite: bool = False,
                 device: Optional[torch.device] = None,
                 dtype: Optional[torch.dtype] = None) -> None:
        _check_num_features(num_features)
        _check_eps(eps)
        groups = _resolve_groups(num_features, num_groups, channels_per_group)
        window = normalize_window_size(window_size)
        super().__init__(groups, num_features, eps=eps, affine=affine, device=device,
                         dtype=dtype)
        self.window_size = window
        self.detach_stats = bool(detach_stats)
        self.check_finite = bool(check_finite)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(
                f'{type(self).__name__} expects a 4-D input (N, C, H, W), '
                f'got shape {tuple(x.shape)}')
        if x.shape[1] != self.num_channels:
            raise ValueError(
                f'{type(self).__name__} was built for num_features={self.num_channels} '
                f'channels, got an input with {x.shape[1]}')
        if self.check_finite and not torch.isfinite(x).all():
            nan, inf = int(torch.isnan(x).sum()), int(torch.isinf(x).sum())
            raise FloatingPointError(
                f'{self!r} got a non-finite input of shape {tuple(x.shape)}: {nan} NaN and '
                f'{inf} Inf values (check_finite=True)')
        return local_context_norm(x, self.num_groups, self.window_size, self.weight,
                                  self.bias, self.eps, self.detach_stats)

    def extra_repr(self) -> str:
        return (f'{self.num_channels}, num_groups={self.num_groups}, '
                f'window_size={self.window_size}, eps={self.eps}, affine={self.affine}'
                + (', detach_stats=True' if self.detach_stats else '')
                + (', check_finite=True' if self.check_finite else ''))


class PositionalNorm(LCN):
    """Positional Normalization (Li et al., 2019): LCN with one group and a 1x1 window."""

    _abbr_ = 'pn'

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = True,
                 device: Optional[torch.device] = None,
                 dtype: Optional[torch.dtype] = None) -> None:
        super().__init__(num_features, num_groups=1, window_size=1, eps=eps, affine=affine,
                         device=device, dtype=dtype)


@enable_bn_gn_keys
class LayerNormCHW(nn.GroupNorm):
    """Layer norm over (C, H, W) of NCHW maps with per-channel affine (GN with one group).

    ``nn.LayerNorm`` (mmcv's ``'LN'``) normalizes the trailing dims and cannot take a conv
    feature map with a per-channel affine; this is the LN of the LCN paper's comparisons.
    """

    _abbr_ = 'ln'

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = True,
                 device: Optional[torch.device] = None,
                 dtype: Optional[torch.dtype] = None) -> None:
        _check_num_features(num_features)
        _check_eps(eps)
        super().__init__(1, num_features, eps=eps, affine=affine, device=device, dtype=dtype)
