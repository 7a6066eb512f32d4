"""aerial_demo.report and tools/analysis_tools/results_report.py on made-up records: cells with
n < 3 flagged, paired differences and their sign, robustness drops and verdicts, test-time LCN
rows, and --check naming the document and line that differ."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from aerial_demo import report
from aerial_demo.study import make_spec, run_key
from aerial_demo.tasks import REPO_ROOT


def _study(task: str, norm: str, seed: int, value: float, **kw) -> dict:
    metrics = {'det': ['bbox mAP'], 'inst': ['bbox mAP', 'mask mAP'], 'seg': ['mIoU']}[task]
    return dict(make_spec(task, norm, seed=seed, **kw), metrics={m: value for m in metrics})


def test_cell_flags_fewer_than_three_runs() -> None:
    assert report.cell([]) == 'not run'
    assert report.cell([50.0]) == '50.0 (n=1 < 3)'
    assert report.cell([50.0, 52.0]) == '51.0 ± 1.4 (n=2 < 3)'
    assert report.cell([1.0, 2.0, 3.0]) == '2.0 ± 1.0 (n=3)'
    assert report.cell([-1.0, -2.0, -3.0], signed=True) == '-2.0 ± 1.0 (n=3)'


def test_main_and_paired_tables() -> None:
    recs = [_study('seg', 'LCN', s, v) for s, v in ((0, 60.0), (1, 58.0), (2, 61.0))]
    recs += [_study('seg', 'GN', s, v) for s, v in ((0, 59.0), (1, 59.0), (2, 60.0))]
    recs += [_study('seg', 'BN', 0, 50.0), _study('seg', 'LCN', 3, 99.0, iters=5)]
    main = report.main_table(recs).splitlines()
    assert main[-1] == '| LCN | not run | not run | not run | 59.7 ± 1.5 (n=3) |'  # 5-iter run out
    assert main[2] == '| BN | not run | not run | not run | 50.0 (n=1 < 3) |'
    paired = report.paired_table(recs).splitlines()
    seg = '| SpaceNet building segmentation: mIoU'
    gn = next(line for line in paired if line.startswith(f'{seg} | GN'))
    assert 's0: +1.0, s1: -1.0, s2: +1.0' in gn and 'mixed: LCN higher in 2 of 3' in gn
    assert '+0.3 ± 1.2 (n=3)' in gn
    bn = next(line for line in paired if line.startswith(f'{seg} | BN'))
    assert 's0: +10.0' in bn and 'LCN higher in all 1 (n < 3)' in bn


def _rob(src: dict, shift: str, value: float) -> dict:
    return dict({k: src[k] for k in ('task', 'norm', 'norm_cfg', 'seed', 'batch_size', 'iters',
                                     'tag', 'lr', 'load_from', 'config')},
                source=run_key(src), shift=shift, metrics={'mIoU': value},
                key=json.dumps([run_key(src), shift]))


def test_robustness_drops_and_verdict() -> None:
    rob = []
    for norm, clean, hazed in (('LCN', (60, 62, 61), (58, 60, 59)),
                               ('GN', (60, 61, 62), (50, 52, 51)),
                               ('BN', (55, 56, 57), (54, 55, 56))):
        for seed, (c, h) in enumerate(zip(clean, hazed)):
            src = _study('seg', norm, seed, c)
            rob += [_rob(src, 'none', c), _rob(src, 'haze', h)]
    assert report.drops(rob, 'seg', 'LCN', 'haze') == [-2, -2, -2]
    table = report.robustness_table(rob, 'seg').splitlines()
    assert table[0] == '| norm | clean mIoU | haze: drop |'
    assert table[-1] == '| LCN | 61.0 ± 1.0 (n=3) | -2.0 ± 0.0 (n=3) |'
    verdict = report.robustness_verdicts(rob, 'seg')
    assert "smaller than GN's (-10.0 ± 1.0, n=3; gap +8.0, beyond the seed spread 1.0)" in verdict
    assert "not smaller than BN's (-1.0 ± 0.0, n=3; gap -1.0, beyond" in verdict


def test_test_time_lcn_rows() -> None:
    base = dict(task='seg', scene='buildings 900x900', trained_norm='GN')
    recs = [dict(base, test_norm='GN', window=None, metrics={'mIoU val strip': 50.0,
                                                             'mIoU scene': 55.0}),
            dict(base, test_norm='LCN', window=7, metrics={'mIoU val strip': 48.0,
                                                           'mIoU scene': 53.0})]
    lines = report.test_time_lcn_table(recs).splitlines()
    assert lines[2] == '| seg | buildings 900x900 | GN | GN | 50.0 (n=1 < 3) | 55.0 (n=1 < 3) |'
    assert lines[3].startswith('| seg | buildings 900x900 | GN | LCN (window 7) | 48.0')


def test_replace_blocks_requires_markers_and_generators() -> None:
    text = 'a\n<!-- results:x:begin -->\n\nold\n\n<!-- results:x:end -->\nb\n'
    assert report.replace_blocks(text, {'x': 'new'}) == text.replace('old', 'new')
    with pytest.raises(KeyError, match='markers missing'):
        report.replace_blocks(text, {'x': 'new', 'y': 'z'})
    with pytest.raises(KeyError, match='no generator'):
        report.replace_blocks(text, {})
    assert report.first_difference('a\nb\n', 'a\nc\n') == (2, 'b', 'c')
    assert report.first_difference('a\n', 'a\n') is None


def test_results_report_check_names_document_and_line(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    """A copy of the docs with one record added: --check fails naming the table's line;
    regenerating fixes it; a hand-edited number fails again."""
    for rel in ('README.md', 'docs/results.md', 'projects/aerial_demo/README.md'):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / rel, tmp_path / rel)
    (tmp_path / 'docs/results').mkdir()
    (tmp_path / 'docs/results/study.jsonl').write_text(
        json.dumps(_study('seg', 'LCN', 0, 61.25)) + '\n')
    spec = importlib.util.spec_from_file_location(
        'results_report', REPO_ROOT / 'tools/analysis_tools/results_report.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main(['--root', str(tmp_path), '--check']) == 1
    err = capsys.readouterr().err
    assert 'docs/results.md:' in err and 'README.md:' in err and 'differs from the records' in err
    assert tool.main(['--root', str(tmp_path)]) == 0
    assert (tmp_path / 'docs/figures/study/norms.png').stat().st_size > 0
    doc = (tmp_path / 'docs/results.md').read_text()
    assert '| LCN | not run | not run | not run | 61.2 (n=1 < 3) |' in doc
    assert '![metric per norm (mean ± std over seeds)](figures/study/norms.png)' in doc
    assert tool.main(['--root', str(tmp_path), '--check']) == 0
    (tmp_path / 'docs/results.md').write_text(doc.replace('61.2 (n=1 < 3)', '63.0 (n=3)'))
    assert tool.main(['--root', str(tmp_path), '--check']) == 1
    line = next(i for i, t in enumerate(doc.splitlines(), 1) if '61.2 (n=1 < 3)' in t)
    assert f'docs/results.md:{line}:' in capsys.readouterr().err
