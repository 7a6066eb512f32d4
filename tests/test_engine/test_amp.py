"""``--amp``: bfloat16 autocast on CPU (CPUAmpOptimWrapper), float16 AmpOptimWrapper on GPU.

LCN statistics are computed in float32 inside autocast (the op disables it), so the output is
the float32 result rounded once to bfloat16, even for inputs whose mean is far from zero.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import lcn_mm
from helpers.toy import REPO_ROOT, TOY_CONFIG, run_tool
from lcn_mm.engine.optim import CPUAmpOptimWrapper

ROOT = Path(REPO_ROOT)


def _train_amp(work_dir: Path):
    proc = run_tool([ROOT / 'tools/train.py', TOY_CONFIG, '--amp', '--work-dir', work_dir])
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = next(work_dir.glob('*/*.log')).read_text()
    losses = [float(v) for v in re.findall(r'\bloss: (\S+)', log)]
    assert len(losses) == 6 and all(torch.isfinite(torch.tensor(losses)))
    params = torch.load(work_dir / 'params_rank0.pth')
    assert all(torch.isfinite(p).all() and p.dtype == torch.float32 for p in params.values())
    return log, losses


@pytest.mark.skipif(torch.cuda.is_available(), reason='the GPU test covers --amp with CUDA')
def test_amp_trains_on_cpu_in_bfloat16(tmp_path: Path) -> None:
    log, losses = _train_amp(tmp_path)
    assert "type='CPUAmpOptimWrapper'" in log
    assert losses[-1] < losses[0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU')
def test_amp_trains_on_gpu_in_float16(tmp_path: Path) -> None:
    log, _ = _train_amp(tmp_path)
    assert "type='AmpOptimWrapper'" in log


def test_cpu_amp_wrapper_autocasts_to_bfloat16() -> None:
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    norm = lcn_mm.LCN(8, num_groups=2, window_size=5)
    wrapper = CPUAmpOptimWrapper(optimizer=torch.optim.SGD(conv.parameters(), lr=0.1))
    x = torch.randn(2, 3, 16, 16)
    with wrapper.optim_context(conv):
        h = conv(x)
        y = norm(h)
    assert h.dtype == torch.bfloat16 and y.dtype == torch.bfloat16
    # LCN ran in float32 on the bfloat16 input and rounded once at the end.
    assert torch.equal(y, norm(h.float()).to(torch.bfloat16))
    with pytest.raises(ValueError, match='bfloat16'):
        CPUAmpOptimWrapper(dtype='float16', optimizer=torch.optim.SGD(conv.parameters(), lr=0.1))


@pytest.mark.parametrize('device', ['cpu'] + (['cuda'] if torch.cuda.is_available() else []))
def test_lcn_statistics_stay_float32_under_autocast(device: str) -> None:
    dtype = torch.bfloat16 if device == 'cpu' else torch.float16
    g = torch.Generator().manual_seed(0)
    # A large offset: statistics in 16-bit floats would lose the per-pixel deviations.
    x = (300 + torch.randn(2, 8, 24, 24, generator=g)).to(device, dtype)
    norm = lcn_mm.LCN(8, num_groups=4, window_size=7).to(device)
    with torch.autocast(device, dtype=dtype):
        y = norm(x)
    assert y.dtype == dtype
    ref = lcn_mm.local_context_norm(x.double(), 4, 7, eps=norm.eps)
    assert torch.isfinite(y).all()
    # One rounding of an O(1) output to 16 bits: error ~ 2**-8 (bf16) / 2**-11 (fp16) relative.
    torch.testing.assert_close(y.double(), ref, rtol=0, atol=0.02 if dtype == torch.bfloat16
                               else 0.005)

    conv = torch.nn.Conv2d(8, 8, 3, padding=1).to(device)
    with torch.autocast(device, dtype=dtype):
        out = norm(conv(x.float()))
    (out.float() ** 2).mean().backward()
    for p in (*conv.parameters(), *norm.parameters()):
        assert p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all()
