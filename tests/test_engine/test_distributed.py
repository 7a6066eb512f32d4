"""Multi-process training through mmengine's pytorch launcher (torchrun, gloo, CPU).

Two ranks with batch 2 each end with identical weights, equal to one process with batch 4:
LCN has no batch statistics, so nothing needs synchronising (no SyncBN), and the toy loss is a
batch mean, so DDP's gradient averaging is the single-process gradient. BN is shown to differ.
"""
from __future__ import annotations

from pathlib import Path

import torch

import lcn_mm
from helpers.toy import REPO_ROOT, TOY_CONFIG, LCNToyDataset, LCNToyNet, free_port, run_tool

ROOT = Path(REPO_ROOT)


def test_two_gloo_ranks_equal_one_process_on_the_global_batch(tmp_path: Path) -> None:
    ddp, single = tmp_path / 'ddp', tmp_path / 'single'
    torchrun = ['-m', 'torch.distributed.run', '--nproc_per_node', '2',
                '--master_addr', '127.0.0.1', '--master_port', free_port()]
    proc = run_tool(torchrun + [ROOT / 'tools/train.py', TOY_CONFIG, '--launcher', 'pytorch',
                                '--work-dir', ddp,
                                '--cfg-options', 'train_dataloader.batch_size=2'])
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    proc = run_tool([ROOT / 'tools/train.py', TOY_CONFIG, '--work-dir', single,
                     '--cfg-options', 'train_dataloader.batch_size=4'])
    assert proc.returncode == 0, proc.stderr[-3000:]

    rank0 = torch.load(ddp / 'params_rank0.pth')
    rank1 = torch.load(ddp / 'params_rank1.pth')
    ref = torch.load(single / 'params_rank0.pth')
    log = next(ddp.glob('*/*.log')).read_text()
    assert 'Distributed training: True' in log and 'CPUDistributedDataParallel' in log
    assert 'norm layers in the model: LCN: 1' in log  # no SyncBN anywhere
    init = LCNToyNet().state_dict()
    for key in ref:
        assert torch.equal(rank0[key], rank1[key]), key  # DDP keeps ranks bitwise equal
        # Equal to the single-process run up to float32 summation order (gradient all-reduce
        # sums two half-batch means instead of one batch mean).
        torch.testing.assert_close(rank0[key], ref[key], rtol=1e-5, atol=1e-6)
        if key.endswith('weight'):
            assert not torch.allclose(ref[key], init[key])  # it did train


def test_lcn_needs_no_sync_bn() -> None:
    """Per-rank halves of a batch give the full batch's LCN output; BN's differ (its stats)."""
    data = LCNToyDataset(length=4, size=16)
    x = data.inputs
    for norm_cfg, same in ((dict(type='LCN', num_groups=2, window_size=5), True),
                           (dict(type='BN'), False)):
        torch.manual_seed(0)
        model = LCNToyNet(norm_cfg=norm_cfg).train()
        full = model.features(x)
        halves = torch.cat([model.features(x[:2]), model.features(x[2:])])
        assert torch.allclose(full, halves, atol=1e-6) is same, norm_cfg['type']
    assert isinstance(LCNToyNet().norm, lcn_mm.LCN)
