"""tools/train.py and tools/test.py, and mmdet's/mmseg's own train.py, take our configs.

The scripts run in-process up to the built Runner (model built, scope set, work dir made);
``Runner.train``/``Runner.test`` are replaced by a recorder, as there is no dataset here.
"""
from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest
import torch
from mmengine.runner import Runner
from mmengine.utils import get_installed_path

import lcn_mm
from lcn_mm.apis.norm_swap import norm_layer_summary

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def run_tool(monkeypatch: pytest.MonkeyPatch):
    """Run a tool script with argv; return the Runner it built and what it was asked to do."""

    def run(script: Path, *args: str) -> tuple[Runner, str]:
        called: dict = {}
        monkeypatch.setattr(Runner, 'train', lambda self: called.update(runner=self, what='train'))
        monkeypatch.setattr(Runner, 'test', lambda self: called.update(runner=self, what='test'))
        monkeypatch.setattr(sys, 'argv', [str(script), *args])
        runpy.run_path(str(script), run_name='__main__')
        return called['runner'], called['what']

    return run


def test_train_norm_flag_on_upstream_config(run_tool, tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    runner, what = run_tool(
        ROOT / 'tools/train.py', 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
        '--norm', 'LCN', '--norm-cfg', 'window_size=(31,31)', '--norm-all',
        '--work-dir', str(tmp_path), '--amp', '--cfg-options', 'train_cfg.max_epochs=1')
    assert what == 'train'
    assert set(norm_layer_summary(runner.model)) == {'LCN'}
    assert any(isinstance(m, lcn_mm.LCN) for m in runner.model.neck.modules())
    assert {tuple(m.window_size) for m in runner.model.modules()
            if isinstance(m, lcn_mm.LCN)} == {(31, 31)}
    # float16 AmpOptimWrapper on GPU, bfloat16 CPUAmpOptimWrapper without one
    assert runner.cfg.optim_wrapper.type == ('AmpOptimWrapper' if torch.cuda.is_available()
                                             else 'CPUAmpOptimWrapper')
    assert runner.cfg.train_cfg.max_epochs == 1
    assert runner.cfg.model.backbone.init_cfg.type == 'Pretrained'
    assert 'lcn_mm' in runner.cfg.custom_imports['imports']  # the saved config reloads
    log = capsys.readouterr().out
    assert 'model.backbone.norm_cfg: BN -> LCN' in log
    assert 'model.neck.norm_cfg: None -> LCN (added)' in log
    assert 'norm layers in the model: LCN: ' in log


def test_train_resume_and_mmseg_dispatch(run_tool, tmp_path: Path) -> None:
    config = ROOT / 'configs/mmseg/pspnet_r50-d8_lcn-all_4xb4-80k_ade20k-512x512.py'
    runner, _ = run_tool(ROOT / 'tools/train.py', str(config), '--work-dir', str(tmp_path),
                         '--resume', 'ckpt.pth')
    assert runner.cfg.default_scope == 'mmseg'
    assert runner.cfg.resume is True and runner.cfg.load_from == 'ckpt.pth'
    assert set(norm_layer_summary(runner.model)) == {'LCN'}


def test_test_tool_loads_the_checkpoint(run_tool, tmp_path: Path) -> None:
    config = ROOT / 'configs/mmdet/mask-rcnn_r50_fpn_lcn-all_1x_cityscapes.py'
    runner, what = run_tool(ROOT / 'tools/test.py', str(config), 'model.pth',
                            '--work-dir', str(tmp_path))
    assert what == 'test'
    assert runner.cfg.load_from == 'model.pth'


@pytest.mark.parametrize('package,config', [
    ('mmdet', 'configs/mmdet/mask-rcnn_r50_fpn_lcn-all_2x_coco.py'),
    ('mmseg', 'configs/mmseg/deeplabv3plus_r50-d8_lcn-all_4xb2-80k_cityscapes-512x1024.py'),
])
def test_upstream_train_script_accepts_our_config(run_tool, tmp_path: Path, package: str,
                                                  config: str) -> None:
    """What `mim train` runs: the package's own tools/train.py, lcn_mm via custom_imports."""
    script = Path(get_installed_path(package)) / '.mim' / 'tools' / 'train.py'
    runner, _ = run_tool(script, str(ROOT / config), '--work-dir', str(tmp_path))
    assert set(norm_layer_summary(runner.model)) == {'LCN'}
