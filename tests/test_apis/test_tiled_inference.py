"""Tiled inference equals whole-image inference with LCN (local windows); not with GroupNorm."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

import lcn_mm  # noqa: F401
from helpers.toy import REPO_ROOT, run_tool

sys.path.insert(0, str(Path(REPO_ROOT) / 'tools' / 'analysis_tools'))
from huge_image import build_backbone  # noqa: E402

from lcn_mm.apis.tiled import receptive_context, sequential_stack, tiled_inference  # noqa: E402

ROOT = Path(REPO_ROOT)


def stack(norm: str, dtype=torch.float64) -> torch.nn.Sequential:
    torch.manual_seed(0)
    # stride 1, 2, 1: context = 1 + 3 (LCN 7) + 1 + 2*2 (LCN 5 at stride 2) + 2*1 + 2*2 = 15
    model = sequential_stack([3, 8, 8, 8], norm=norm, window=7, strides=[1, 2, 1])
    model[4].window_size = (5, 5) if norm == 'LCN' else None
    return model.to(dtype).eval()


def test_receptive_context_of_a_chain() -> None:
    context, stride = receptive_context(stack('LCN'), size=64)
    # convs: 1 (stride 1) + 1*1 (its input has stride 1) + 1*2; LCNs: 3*1 + 2*2 + 3*2
    assert (context, stride) == (1 + 1 + 2 + 3 + 4 + 6, 2)
    assert receptive_context(stack('GN'), size=64)[0] == math.inf


@pytest.mark.parametrize('dtype,tol', [(torch.float64, 1e-10), (torch.float32, 2e-5)])
def test_lcn_tiles_equal_whole_image(dtype: torch.dtype, tol: float) -> None:
    model = stack('LCN', dtype)
    g = torch.Generator().manual_seed(1)
    # Uneven brightness across the scene, odd sizes (partial last tiles).
    x = torch.randn(1, 3, 101, 86, generator=g, dtype=dtype) * 3 + \
        torch.linspace(0, 50, 86, dtype=dtype)
    context, stride = receptive_context(model, size=64)
    whole = model(x)
    tiled = tiled_inference(model, x, tile=32, margin=context, stride=stride)
    assert tiled.shape == whole.shape
    torch.testing.assert_close(tiled, whole, rtol=0, atol=tol)
    # A margin below the context breaks it: the margin is what makes tiles exact.
    short = tiled_inference(model, x, tile=32, margin=context - 7, stride=stride)
    assert (short - whole).abs().max() > 1e-3


def test_groupnorm_tiles_differ() -> None:
    model = stack('GN')
    x = torch.randn(1, 3, 96, 96, dtype=torch.float64) + torch.linspace(0, 50, 96,
                                                                        dtype=torch.float64)
    with pytest.raises(ValueError, match='receptive context'):
        tiled_inference(model, x, tile=32, margin=math.inf, stride=2)
    # Even with a generous margin (32 px > the conv reach), GN's per-tile statistics differ.
    diff = (tiled_inference(model, x, tile=32, margin=32, stride=2) - model(x)).abs().max()
    assert diff > 0.1


def test_resnet_stage_with_lcn_tiles_equal_whole_image() -> None:
    """ResNet-18 stem + stage 1 (stride 4) with LCN: what tools/analysis_tools/tiled_inference.py
    runs."""
    backbone = build_backbone('LCN', num_stages=1, width=16, window=7, groups=4)
    context, stride = receptive_context(backbone, size=128)
    assert stride == 4 and math.isfinite(context)
    x = torch.randn(1, 3, 192, 160) + torch.linspace(-20, 20, 160)
    with torch.no_grad():
        whole = backbone(x)
    torch.testing.assert_close(tiled_inference(backbone, x, 64, context, stride), whole,
                               rtol=0, atol=2e-5)


def test_tiled_tool_on_the_landsat_scene_crop(tmp_path) -> None:
    """The tool end to end on a real scene crop: exits 0 and reports the interior equality."""
    scene = ROOT.parent / 'shared/data/landsat5-nebraska/nebraska_landsat5_with_nodata_wgs84.tif'
    if not scene.is_file():
        pytest.skip(f'no shared data at {scene}')
    proc = run_tool([ROOT / 'tools/analysis_tools/tiled_inference.py', scene,
                     '--crop', '384', '320', '--tile', '128', '--width', '8',
                     '--window', '15', '--groups', '2',
                     '--check', '--out', tmp_path / 'feat.npy'])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'max |tiled - whole| = ' in proc.stdout and (tmp_path / 'feat.npy').is_file()


def test_tiled_tool_rejects_unreadable_image(tmp_path) -> None:
    bad = tmp_path / 'broken.tif'
    bad.write_bytes(b'II*\x00 not really a tiff')
    proc = run_tool([ROOT / 'tools/analysis_tools/tiled_inference.py', bad])
    assert proc.returncode == 2
    assert f'cannot read image {bad}' in proc.stderr and 'Traceback' not in proc.stderr
