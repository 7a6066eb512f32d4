"""The LCN contract computed the slow, obviously-correct way (float64, pixel by pixel), and
adversarial float32 inputs; the tests and benchmarks check every fast path against these."""
from __future__ import annotations

from typing import Optional

import torch

__all__ = ['reference_lcn', 'adversarial_maps']


def reference_lcn(x: torch.Tensor, num_groups: int, kh: int, kw: int,
                  weight: Optional[torch.Tensor] = None, bias: Optional[torch.Tensor] = None,
                  eps: float = 1e-5, detach_stats: bool = False) -> torch.Tensor:
    """The contract, pixel by pixel in float64: centred clipped window, population variance."""
    x = x.double()
    n, c, h, w = x.shape
    xg = x.view(n, num_groups, c // num_groups, h, w)
    mean = torch.empty(n, num_groups, 1, h, w, dtype=x.dtype, device=x.device)
    var = torch.empty_like(mean)
    for i in range(h):
        for j in range(w):
            r0, r1 = max(i - (kh - 1) // 2, 0), min(i + kh // 2, h - 1)
            c0, c1 = max(j - (kw - 1) // 2, 0), min(j + kw // 2, w - 1)
            win = xg[:, :, :, r0:r1 + 1, c0:c1 + 1].reshape(n, num_groups, -1)
            m = win.mean(-1)
            mean[:, :, 0, i, j] = m
            var[:, :, 0, i, j] = ((win - m[..., None]) ** 2).mean(-1)
    if detach_stats:
        mean, var = mean.detach(), var.detach()
    y = ((xg - mean) / torch.sqrt(var + eps)).view(n, c, h, w)
    if weight is not None:
        y = y * weight.double().view(1, -1, 1, 1)
    if bias is not None:
        y = y + bias.double().view(1, -1, 1, 1)
    return y


def adversarial_maps(size: int = 1024) -> torch.Tensor:
    """Constant regions, a 1e4 offset with small noise, and ramps 0..2000, all in float32."""
    gen = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0, 2000, size, dtype=torch.float64)
    ch0 = ramp[None, :].expand(size, size) + 0.01 * torch.randn(size, size, generator=gen)
    ch1 = 1e4 + 0.05 * torch.randn(size, size, generator=gen, dtype=torch.float64)
    ch1[: size // 4] = 1e4                                   # exactly constant
    ch2 = ramp[:, None].expand(size, size) * 1.0             # noiseless vertical ramp
    ch3 = torch.where(torch.arange(size)[None, :] < size // 2, 0.0, 20.0).expand(size, size)
    ch3 = ch3 + 0.01 * torch.randn(size, size, generator=gen, dtype=torch.float64)
    return torch.stack([ch0, ch1, ch2, ch3])[None].float()
