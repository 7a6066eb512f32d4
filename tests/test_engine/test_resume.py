"""Interrupt and resume, and crash-safe checkpoints (AtomicCheckpointHook).

* A run SIGKILLed after iteration 4 (checkpoint at 3) and resumed with ``--resume`` ends with
  bitwise the same weights as an uninterrupted run (CPU, ``randomness.deterministic``, one
  thread; the dataloader is advanced past the trained batches, scheduler and momentum restored).
* A crash while a checkpoint is written leaves the previous checkpoint and ``last_checkpoint``
  intact and loadable; mmengine's plain ``CheckpointHook`` (with ``max_keep_ckpts=1``) does not.
"""
from __future__ import annotations

import io
import os
import uuid
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

import helpers.toy  # noqa: F401  registers the toy model, dataset and hook
from helpers.toy import REPO_ROOT, TOY_CONFIG, run_tool, tool_env
from lcn_mm.engine import hooks as atomic_checkpoint
from lcn_mm.engine.hooks import atomic_write_bytes

ROOT = Path(REPO_ROOT)
TOY = TOY_CONFIG


def test_killed_and_resumed_run_equals_uninterrupted(tmp_path: Path) -> None:
    full, broken = tmp_path / 'full', tmp_path / 'broken'
    train = [ROOT / 'tools/train.py', TOY]
    proc = run_tool(train + ['--work-dir', full])
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run_tool(train + ['--work-dir', broken], env=tool_env(LCN_TOY_KILL_AT_ITER='4'))
    assert proc.returncode == -9  # SIGKILL after iteration 4; the last checkpoint is iter 3
    assert (broken / 'last_checkpoint').read_text().endswith('iter_3.pth')
    assert not (broken / 'iter_6.pth').exists()
    proc = run_tool(train + ['--work-dir', broken, '--resume'])
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = sorted(broken.glob('*/*.log'))[-1].read_text()
    assert 'resumed epoch: 0, iter: 3' in log

    a = torch.load(full / 'iter_6.pth', weights_only=False)
    b = torch.load(broken / 'iter_6.pth', weights_only=False)
    assert a['meta']['iter'] == b['meta']['iter'] == 6
    for key, value in a['state_dict'].items():
        assert torch.equal(value, b['state_dict'][key]), key
    for sa, sb in zip(a['optimizer']['state'].values(), b['optimizer']['state'].values()):
        assert torch.equal(sa['momentum_buffer'], sb['momentum_buffer'])


def test_resume_with_a_mismatched_checkpoint_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / 'other.pth'
    torch.save({'state_dict': {'conv1.weight': torch.zeros(8, 3, 5, 5)}}, bad)
    proc = run_tool([ROOT / 'tools/train.py', TOY, '--work-dir', tmp_path, '--resume', bad])
    assert proc.returncode == 2
    assert 'does not match the model' in proc.stderr and 'conv1.weight' in proc.stderr
    assert 'Traceback' not in proc.stderr


# ----------------------------------------------------------------- crash during saving


def toy_runner(work_dir: Path, hook: str, max_keep_ckpts: int = -1) -> Runner:
    cfg = Config.fromfile(str(TOY))
    cfg.work_dir = str(work_dir)
    cfg.default_hooks.checkpoint.update(type=hook, max_keep_ckpts=max_keep_ckpts)
    cfg.default_hooks.logger.interval = 100
    cfg.custom_hooks = []
    cfg.experiment_name = f'toy_{uuid.uuid4().hex[:8]}'  # several Runners in one process
    return Runner.from_cfg(cfg)


def crash_on_second_save(monkeypatch: pytest.MonkeyPatch) -> None:
    """The 2nd torch.save writes half of its bytes to its file and then dies."""
    real_save = torch.save
    calls = []

    def save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) < 2:
            return real_save(obj, f, *args, **kwargs)
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        data = buf.getvalue()
        if isinstance(f, (str, os.PathLike)):
            with open(f, 'wb') as fh:
                fh.write(data[:len(data) // 2])
        else:
            f.write(data[:len(data) // 2])
        raise KeyboardInterrupt('simulated kill while saving')

    monkeypatch.setattr(torch, 'save', save)


def assert_iter3_is_the_intact_latest(work_dir: Path) -> None:
    assert (work_dir / 'last_checkpoint').read_text() == str(work_dir / 'iter_3.pth')
    ckpt = torch.load(work_dir / 'iter_3.pth', weights_only=False)
    assert ckpt['meta']['iter'] == 3 and 'conv1.weight' in ckpt['state_dict']
    assert not list(work_dir.glob('.*.tmp'))


@pytest.mark.parametrize('max_keep_ckpts', [-1, 1])
def test_kill_while_saving_keeps_the_previous_checkpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, max_keep_ckpts: int) -> None:
    runner = toy_runner(tmp_path, 'AtomicCheckpointHook', max_keep_ckpts)
    crash_on_second_save(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        runner.train()
    assert_iter3_is_the_intact_latest(tmp_path)
    assert not (tmp_path / 'iter_6.pth').exists()


def test_crash_between_write_and_rename(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """All bytes of iter_6 written to the temporary file, then the process dies (fsync)."""
    runner = toy_runner(tmp_path, 'AtomicCheckpointHook')
    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) > 2:  # 1: iter_3.pth, 2: last_checkpoint, 3: iter_6.pth
            raise OSError('simulated power loss')
        return real_fsync(fd)

    monkeypatch.setattr(atomic_checkpoint.os, 'fsync', fsync)
    monkeypatch.setattr(atomic_checkpoint, '_fsync_dir', lambda path: None)
    with pytest.raises(OSError, match='power loss'):
        runner.train()
    assert_iter3_is_the_intact_latest(tmp_path)
    assert not (tmp_path / 'iter_6.pth').exists()


def test_plain_checkpoint_hook_loses_the_only_checkpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Why the hook exists: mmengine deletes the old checkpoint before writing the new one."""
    runner = toy_runner(tmp_path, 'CheckpointHook', max_keep_ckpts=1)
    crash_on_second_save(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        runner.train()
    assert not (tmp_path / 'iter_3.pth').exists()
    assert (tmp_path / 'last_checkpoint').read_text().endswith('iter_3.pth')  # dangling


def test_atomic_write_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / 'sub' / 'f.bin'
    atomic_write_bytes(b'old', path)
    assert path.read_bytes() == b'old'
    monkeypatch.setattr(atomic_checkpoint.os, 'replace',
                        lambda *a: (_ for _ in ()).throw(OSError('disk full')))
    with pytest.raises(OSError):
        atomic_write_bytes(b'new' * 1000, path)
    assert path.read_bytes() == b'old'
    assert sorted(p.name for p in path.parent.iterdir()) == ['f.bin']
