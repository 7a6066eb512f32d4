"""The A/B speed tools run end to end (A/A on this checkout, smallest shape) and record pairs."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / 'tools/analysis_tools'


def _run(tool: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TOOLS), str(ROOT)]))
    return subprocess.run([sys.executable, str(TOOLS / tool), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True, timeout=600)


@pytest.mark.skipif(shutil.which('g++') is None, reason='needs g++ to build the two kernels')
def test_kernel_ab_pairs(tmp_path: Path) -> None:
    out = tmp_path / 'ab.json'
    res = _run('ab_lcn_kernel.py', str(ROOT), str(ROOT), '--pairs', '3', '--match', 'P5',
               '--part', 'both', '--out', str(out))
    rec = json.loads(out.read_text())
    (row, ) = rec['summary']
    assert row['shape'] == 'FPN P5 /32, cpg 8' and row['pairs'] == 3
    assert row['keep_stats'] == {'A': True, 'B': True}  # 8 channels per group keep them
    assert all(a > 0 and b > 0 for a, b in rec['raw'][row['shape']])
    assert rec['abi']['A'] == rec['abi']['B'] >= 4
    assert 'FPN P5' in res.stdout and 'ab_lcn_kernel.py' in rec['command']


def test_op_ab_paired_mode(tmp_path: Path) -> None:
    out = tmp_path / 'ab.json'
    _run('ab_lcn_speed.py', str(ROOT), str(ROOT), '--cases', 'deployment', '--match', 'P5',
         '--fwd', '--rounds', '1', '--pairs', '2', '--out', str(out))
    rec = json.loads(out.read_text())
    assert rec['mode'] == 'paired' and rec['pairs'] == 2
    assert [r['case'] for r in rec['summary']] == ['FPN P5 /32, cpg 8', 'FPN P5 /32, cpg 8 [fwd]']
    for row in rec['summary']:
        assert len(rec['raw'][row['case']]) == 2 and row['q1'] <= row['ratio'] <= row['q3']


def test_op_ab_rounds_mode(tmp_path: Path) -> None:
    out = tmp_path / 'ab.json'
    _run('ab_lcn_speed.py', str(ROOT), str(ROOT), '--cases', 'deployment', '--match', 'P5',
         '--rounds', '2', '--reps', '1', '--out', str(out))
    rec = json.loads(out.read_text())
    assert [r['case'] for r in rec['summary']] == ['FPN P5 /32, cpg 8']  # no [fwd] without --fwd
    assert len(rec['raw']['A']) == len(rec['raw']['B']) == 2 and rec['summary'][0]['ratio'] > 0
