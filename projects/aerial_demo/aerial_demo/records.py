"""What a recorded run carries besides its metrics: machine, load, versions, commit, command.

Every demo or study run appends one JSON line with these fields, so that a number quoted in a
document can be traced to the run, the machine it ran on and the command that reproduces it.
"""
from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

__all__ = ['environment', 'append_jsonl']


def _cpu_model() -> str:
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: What a run reads; edits elsewhere (docs, and the records a study appends to
#: docs/results/ as it goes) do not make a record's commit ``+dirty``.
RUN_INPUTS = ('lcn_mm', 'projects/aerial_demo', 'configs', 'data', 'tools', 'setup.py')


def _git_commit(root: Path) -> str:
    """HEAD, plus ``+dirty`` when tracked files a run reads differ from it."""
    try:
        out = subprocess.run(['git', '-C', str(root), 'rev-parse', '--short', 'HEAD'],
                             capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(['git', '-C', str(root), 'status', '--porcelain', '-uno', '--',
                                *RUN_INPUTS], capture_output=True, text=True,
                               timeout=10).stdout.strip()
        return out.stdout.strip() + ('+dirty' if dirty else '') if out.returncode == 0 else ''
    except (OSError, subprocess.SubprocessError):
        return ''


def environment(root: Path) -> dict:
    """The run's context: CPU, cores, torch threads and SIMD level, load, versions, commit."""
    import mmdet
    import mmengine
    import mmseg
    import torch
    return dict(
        finished=time.strftime('%Y-%m-%dT%H:%M:%S%z'),
        cpu=_cpu_model(), cores=os.cpu_count(), torch_threads=torch.get_num_threads(),
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        ATEN_CPU_CAPABILITY=os.environ.get('ATEN_CPU_CAPABILITY'),
        OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS'),
        loadavg_1m=round(os.getloadavg()[0], 2),
        versions=dict(python=platform.python_version(), torch=torch.__version__,
                      mmengine=mmengine.__version__, mmdet=mmdet.__version__,
                      mmseg=mmseg.__version__),
        commit=_git_commit(root),
        command=' '.join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv]))


def append_jsonl(path: str, rec: dict) -> None:
    """Append one record as a JSON line (creating folders)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'a') as f:
        f.write(json.dumps(rec, sort_keys=True) + '\n')
