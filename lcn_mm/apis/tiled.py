"""Tiled (sliding-window) inference whose output equals whole-image inference.

A network made of convolutions, pooling, pointwise layers and LCN with *local* windows is
translation-equivariant with a finite receptive context: output pixel p depends only on input
pixels within ``context`` pixels of p (its receptive field) and, at the image border, on where
the border is. So an image can be cut into core tiles, each run with a margin of at least
``context`` pixels of real image around it (less at the image border, where the whole image has
the same border), and the cores' outputs stitched: the result equals running the whole image.
Tile origins must be multiples of the network's total stride so that strided layers sample the
same positions. Memory then depends on the tile, not on the scene.

GroupNorm (and BN in train mode, IN, LN) cannot do this: its statistics are over the whole map,
so each tile is normalised differently (``tests/test_apis/test_tiled_inference.py`` shows both).

:func:`receptive_context` measures ``context`` and the stride of a model with forward hooks on a
dry run (an upper bound for branching networks such as ResNet: every layer's reach is added).
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..layers import LCN

__all__ = ['receptive_context', 'layer_reach', 'tile_ranges', 'tiled_inference',
           'sequential_stack']


def _pair(v) -> Tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def layer_reach(module: nn.Module) -> Optional[Tuple[float, float]]:
    """How far (rows, cols, in the module's input pixels) one output pixel of ``module`` sees.

    ``None`` for layers that do not mix pixels (pointwise). ``math.inf`` for layers whose
    statistics cover the whole map (GN/IN/LN, BN in train mode, adaptive pooling).
    """
    if isinstance(module, LCN):  # before GroupNorm: LCN subclasses it
        # Always local: a window covering a small map is GN there, but not on a larger one.
        kh, kw = module.window_size
        return (max((kh - 1) // 2, kh // 2), max((kw - 1) // 2, kw // 2))
    if isinstance(module, (nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm,
                           nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return (math.inf, math.inf)
    if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        k = _pair(module.kernel_size)
        d = _pair(getattr(module, 'dilation', 1))
        p = getattr(module, 'padding', 0)
        p = (0, 0) if isinstance(p, str) else _pair(p)
        # Taps span [-p, (k-1)*d - p] around the output's anchor: reach is the larger side.
        return tuple(max(pi, (ki - 1) * di - pi) for ki, di, pi in zip(k, d, p))
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training:
        return (math.inf, math.inf)
    return None


@torch.no_grad()
def receptive_context(model: nn.Module, in_channels: int = 3, size: int = 256
                      ) -> Tuple[float, int]:
    """``(context, stride)``: input-pixel reach of one output pixel, and the output stride.

    Runs ``model`` once on a ``size x size`` zero image with hooks on every leaf module and sums
    each layer's reach times the stride of its input (exact for a chain, an upper bound for
    branches). ``context`` is ``math.inf`` if any layer normalises over the whole map (GN, or an
    LCN whose window covers its input at this size: use ``size`` close to the tile size).
    """
    total = [0.0, 0.0]
    handles = []

    def hook(module, inputs, output):
        x = inputs[0]
        if not isinstance(x, Tensor) or x.dim() != 4:
            return
        reach = layer_reach(module)
        if reach is None:
            return
        sh, sw = size / x.shape[-2], size / x.shape[-1]
        total[0] += reach[0] * sh
        total[1] += reach[1] * sw

    for m in model.modules():
        if not list(m.children()) or isinstance(m, LCN):
            handles.append(m.register_forward_hook(hook))
    try:
        param = next(model.parameters(), None)
        x = torch.zeros(1, in_channels, size, size,
                        device=param.device if param is not None else 'cpu',
                        dtype=param.dtype if param is not None else torch.float32)
        out = model(x)
    finally:
        for h in handles:
            h.remove()
    out = out[-1] if isinstance(out, (tuple, list)) else out
    stride = size // out.shape[-1]
    if stride * out.shape[-1] != size:
        raise ValueError(f'input size {size} is not a multiple of the output stride')
    return max(total), stride


def tile_ranges(length: int, core: int, margin: int) -> list[tuple[int, int, int, int]]:
    """Cut ``[0, length)`` into cores of ``core`` pixels; return ``(c0, c1, e0, e1)`` per tile.

    ``[e0, e1)`` is the core ``[c0, c1)`` extended by ``margin`` on both sides, clipped.
    """
    out = []
    for c0 in range(0, length, core):
        c1 = min(c0 + core, length)
        out.append((c0, c1, max(0, c0 - margin), min(length, c1 + margin)))
    return out


@torch.no_grad()
def tiled_inference(fn: Callable[[Tensor], Tensor], image: Tensor, tile: int, margin: int,
                    stride: int = 1, out_device: Optional[torch.device] = None,
                    progress: Optional[Callable[[int, int], None]] = None) -> Tensor:
    """Run ``fn`` on overlapping tiles of ``image`` (N, C, H, W) and stitch the cores.

    Args:
        fn: the network, (N, C, h, w) -> (N, C', ceil(h/stride), ceil(w/stride)).
        image: the whole image; may live on the CPU while ``fn`` runs elsewhere (tiles are
            moved to the device of ``fn``'s parameters by the caller's ``fn``).
        tile: core tile size in input pixels, a multiple of ``stride``.
        margin: context on each side, ``>= receptive_context(...)[0]`` for an exact result;
            rounded up to a multiple of ``stride``.
        stride: the network's output stride.
        out_device: where to assemble the output (default: the image's device).
        progress: called as ``progress(done, total)`` after each tile.
    """
    if tile % stride:
        raise ValueError(f'tile={tile} must be a multiple of the output stride {stride}')
    if not math.isfinite(margin):
        raise ValueError('the network has no finite receptive context (a global norm such as '
                         'GroupNorm, or an LCN window covering the map): tiles cannot match '
                         'whole-image inference')
    margin = int(math.ceil(margin / stride) * stride)
    n, _, h, w = image.shape
    rows, cols = tile_ranges(h, tile, margin), tile_ranges(w, tile, margin)
    out: Optional[Tensor] = None
    total, done = len(rows) * len(cols), 0
    for r0, r1, er0, er1 in rows:
        for c0, c1, ec0, ec1 in cols:
            y = fn(image[:, :, er0:er1, ec0:ec1])
            if out is None:
                out = torch.empty(n, y.shape[1], -(-h // stride), -(-w // stride),
                                  dtype=y.dtype, device=out_device or image.device)
            oy0, ox0 = (r0 - er0) // stride, (c0 - ec0) // stride
            oh, ow = -(-r1 // stride) - r0 // stride, -(-c1 // stride) - c0 // stride
            out[:, :, r0 // stride:r0 // stride + oh, c0 // stride:c0 // stride + ow] = \
                y[:, :, oy0:oy0 + oh, ox0:ox0 + ow].to(out.device)
            done += 1
            if progress is not None:
                progress(done, total)
    assert out is not None
    return out


def sequential_stack(channels: Sequence[int], norm: str = 'LCN', window: int = 7,
                     groups: int = 2, strides: Optional[Sequence[int]] = None) -> nn.Sequential:
    """conv3x3 -> norm -> ReLU blocks (a small test network); ``norm`` 'LCN' or 'GN'."""
    layers: list[nn.Module] = []
    strides = strides or [1] * (len(channels) - 1)
    for cin, cout, s in zip(channels[:-1], channels[1:], strides):
        layers.append(nn.Conv2d(cin, cout, 3, stride=s, padding=1))
        layers.append(LCN(cout, num_groups=groups, window_size=window) if norm == 'LCN'
                      else nn.GroupNorm(groups, cout))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)
