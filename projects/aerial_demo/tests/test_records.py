"""A record's commit says whether the code and data a run read differed from HEAD.

Why: the study appends to docs/results/ while it runs; that must not mark its own later
records ``+dirty``, while an edited package, config or data file must.
"""
import subprocess
from pathlib import Path

from aerial_demo.records import _git_commit


def _git(root: Path, *args: str) -> None:
    subprocess.run(['git', '-C', str(root), *args], check=True, capture_output=True)


def test_commit_is_dirty_only_for_run_inputs(tmp_path: Path) -> None:
    for rel in ('lcn_mm/op.py', 'docs/results/study.jsonl'):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text('0\n')
    _git(tmp_path, 'init', '-q')
    _git(tmp_path, 'add', '.')
    _git(tmp_path, '-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qm', 'c')
    head = _git_commit(tmp_path)
    assert head and not head.endswith('+dirty')
    (tmp_path / 'docs/results/study.jsonl').write_text('0\n1\n')
    assert _git_commit(tmp_path) == head
    (tmp_path / 'lcn_mm/op.py').write_text('1\n')
    assert _git_commit(tmp_path) == head + '+dirty'
