"""Bad input to the tools: one clear line on stderr naming the problem, exit code 2, no traceback.

Each case runs ``tools/train.py`` in a subprocess on the toy config (a few seconds each).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import lcn_mm
from helpers.toy import REPO_ROOT, TOY_CONFIG, run_tool, tool_env
from lcn_mm.apis.checkpoint import check_checkpoint
from lcn_mm.apis.config import registered_norm_names
from lcn_mm.apis.errors import UserInputError

ROOT = Path(REPO_ROOT)
TRAIN = ROOT / 'tools/train.py'


def assert_clean_failure(proc, *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert 'Traceback' not in proc.stderr, proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()) <= 4, proc.stderr
    error = [ln for ln in proc.stderr.splitlines() if ln.startswith('error: ')]
    assert len(error) == 1, proc.stderr
    for needle in needles:
        assert needle in error[0], (needle, error[0])


def test_missing_config(tmp_path: Path) -> None:
    missing = tmp_path / 'nope.py'
    assert_clean_failure(run_tool([TRAIN, missing]), 'config file not found', str(missing))


def test_malformed_config(tmp_path: Path) -> None:
    bad = tmp_path / 'bad.py'
    bad.write_text("model = dict(type='LCNToyNet'\n")
    assert_clean_failure(run_tool([TRAIN, bad]), f'config {bad} is malformed', 'SyntaxError')


def test_unknown_norm_type(tmp_path: Path) -> None:
    proc = run_tool([TRAIN, TOY_CONFIG, '--work-dir', tmp_path,
                     '--cfg-options', 'model.norm_cfg.type=LNC'])
    assert_clean_failure(proc, "unknown norm type 'LNC'", 'model.norm_cfg.type',
                         'registered norms: ', 'LCN', 'GN', 'BN', 'SyncBN')


def test_groups_that_do_not_divide_channels(tmp_path: Path) -> None:
    proc = run_tool([TRAIN, TOY_CONFIG, '--work-dir', tmp_path,
                     '--cfg-options', 'model.norm_cfg.num_groups=3'])
    assert_clean_failure(proc, 'num_groups=3 must divide num_features=8')


@pytest.mark.parametrize('content', [b'', b'garbage' * 10, 'truncated'])
def test_corrupt_resume_checkpoint(tmp_path: Path, content) -> None:
    ckpt = tmp_path / 'bad.pth'
    if content == 'truncated':
        torch.save({'state_dict': {'w': torch.zeros(1000)}}, ckpt)
        ckpt.write_bytes(ckpt.read_bytes()[:2000])
    else:
        ckpt.write_bytes(content)
    proc = run_tool([TRAIN, TOY_CONFIG, '--work-dir', tmp_path / 'w', '--resume', ckpt])
    assert_clean_failure(proc, f'cannot read resume checkpoint {ckpt}')


def test_non_finite_input_raises_with_check_finite(tmp_path: Path) -> None:
    args = [TRAIN, TOY_CONFIG, '--work-dir', tmp_path,
            '--cfg-options', 'train_dataloader.dataset.nan_index=0',
            'train_dataloader.sampler.shuffle=False', 'model.norm_cfg.check_finite=True']
    # 1 pixel, 3x3 conv, 8 ch
    assert_clean_failure(run_tool(args), 'LCN(', 'non-finite input', '32 NaN')
    # --debug (or LCN_MM_DEBUG=1) shows the traceback instead.
    proc = run_tool(args, env=tool_env(LCN_MM_DEBUG='1'))
    assert proc.returncode != 0 and 'Traceback' in proc.stderr
    assert 'FloatingPointError' in proc.stderr


def test_check_checkpoint_and_norm_names(tmp_path: Path) -> None:
    names = registered_norm_names()
    assert {'BN', 'GN', 'LN', 'IN', 'SyncBN', 'LCN', 'PN', 'LNCHW'} <= set(names)
    model = lcn_mm.LCN(8, num_groups=2)
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': model.state_dict()}, good)
    assert 'state_dict' in check_checkpoint(str(good), model)
    with pytest.raises(UserInputError, match='shape mismatches'):
        check_checkpoint(str(good), lcn_mm.LCN(4, num_groups=2))
    with pytest.raises(UserInputError, match='not found'):
        check_checkpoint(str(tmp_path / 'missing.pth'), model)
