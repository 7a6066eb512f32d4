#!/usr/bin/env python
"""Run ``tools/demo.py`` for one task and append what it measured to a JSON-lines record.

Why: the task choices in ``projects/aerial_demo/TASKS.md`` (iterations, headline metrics,
time budget) rest on measured runs; each run leaves one line with the metrics, the baseline,
wall time, seconds per training iteration (from the mmengine log), the machine load it ran
under (``os.getloadavg``, sampled every 15 s), the CPU seconds the run used (user + sys of
the child: on a shared machine this, unlike wall time, barely depends on the other load), the
git commit and the exact command.

    python projects/aerial_demo/tools/record_demo_run.py --task nuclei --seed 0 --threads 1 \
        --work-dir /tmp/runs/nuclei_s0 [--out docs/results/demo_dev_runs.jsonl] [-- --iters 300]

Everything after ``--`` goes to ``tools/demo.py`` unchanged.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[3]
DEMO = REPO / 'projects' / 'aerial_demo' / 'tools' / 'demo.py'
sys.path.insert(0, str(REPO / 'projects' / 'aerial_demo'))
from aerial_demo.tasks import TASKS  # noqa: E402


def _git_commit() -> str:
    """HEAD plus ``+dirty`` when files a run reads differ from it (the record says what ran).

    Docs edited while runs queue do not count: only the package, the demo project and data/.
    """
    head = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=REPO,
                          capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no', '--',
                            'lcn_mm', 'projects/aerial_demo', 'data'], cwd=REPO,
                           capture_output=True, text=True).stdout.strip()
    return head + ('+dirty' if dirty else '')


def _train_s_per_iter(task_dir: Path) -> float | None:
    """Median ``time`` (s per training iteration) of the logged windows, from vis_data."""
    logs = sorted(task_dir.glob('*/vis_data/scalars.json'))
    if not logs:
        return None
    times = [json.loads(line)['time'] for line in logs[-1].read_text().splitlines()
             if '"time"' in line and '"loss"' in line]
    return round(statistics.median(times), 4) if times else None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index('--') + 1:] if '--' in argv else []
    argv = argv[:argv.index('--')] if '--' in argv else argv
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--task', required=True)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--work-dir', required=True)
    p.add_argument('--out', default=str(REPO / 'docs' / 'results' / 'demo_dev_runs.jsonl'))
    p.add_argument('--note', default='', help='free text kept in the record')
    args = p.parse_args(argv)

    cmd = [sys.executable, str(DEMO.relative_to(REPO)), '--tasks', args.task,
           '--seed', str(args.seed), '--threads', str(args.threads),
           '--work-dir', args.work_dir, *extra]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    loads: list[float] = [os.getloadavg()[0]]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(15):
            loads.append(os.getloadavg()[0])

    threading.Thread(target=sample, daemon=True).start()
    commit = _git_commit()
    t0 = time.perf_counter()
    rc = subprocess.run(cmd, cwd=REPO, env=env).returncode
    wall = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    done.set()
    loads.append(os.getloadavg()[0])
    results = Path(args.work_dir) / 'results.json'
    rows = json.loads(results.read_text()) if results.exists() else []
    record = {
        'task': args.task,
        'config': TASKS[args.task].config,
        'seed': args.seed, 'threads': args.threads,
        'iters': rows[0]['iters'] if rows else None,
        'batch_size': rows[0]['batch_size'] if rows else None,
        'metrics': {r['metric']: round(r['value'], 2) for r in rows},
        'baseline': {r['metric']: round(r['baseline'], 2) for r in rows},
        'headline': [r['metric'] for r in rows if r['headline']],
        'exit_code': rc,
        'wall_s': round(wall, 1),
        'cpu_s': round(usage.ru_utime + usage.ru_stime, 1),
        'task_wall_s': round(rows[0]['wall_s'], 1) if rows else None,
        's_per_iter': _train_s_per_iter(Path(args.work_dir) / args.task),
        'load_1min': {'start': round(loads[0], 2), 'mean': round(statistics.mean(loads), 2),
                      'max': round(max(loads), 2), 'cpus': os.cpu_count()},
        'commit': commit,
        'command': f'OMP_NUM_THREADS={args.threads} PYTHONPATH=.:projects/aerial_demo '
                   + shlex.join(['python', *cmd[1:]]),
        'date': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
        'note': args.note,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, 'a') as f:
        f.write(json.dumps(record, sort_keys=True) + '\n')
    print(json.dumps(record, indent=1))
    return rc


if __name__ == '__main__':
    sys.exit(main())
