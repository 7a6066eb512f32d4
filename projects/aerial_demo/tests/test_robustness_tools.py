"""tools/eval_shifts.py and tools/test_time_lcn.py end to end on a 2-iteration GN seg model."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

import lcn_mm  # noqa: F401
from aerial_demo import NORMS, TASKS, prepare_cfg, train_and_evaluate
from aerial_demo.study import append_result, make_spec
from aerial_demo.tasks import REPO_ROOT

TOOLS = REPO_ROOT / 'projects/aerial_demo/tools'
ENV_FIELDS = ('cpu', 'cores', 'loadavg_1m', 'loadavg_1m_start', 'versions', 'commit', 'command')


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, TOOLS / f'{name}.py')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope='module')
def study_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A study record file with one GN seg run: 2 iterations, evaluated on 2 val images."""
    root = tmp_path_factory.mktemp('study')
    spec = make_spec('seg', 'GN', seed=0, iters=2)
    cfg = prepare_cfg(REPO_ROOT / TASKS['seg'].config, str(root / 'run'), norm_cfg=NORMS['GN'],
                      batch_size=2, max_iters=2, val_images=2)
    out = train_and_evaluate(cfg, threads=1)
    results = root / 'study.jsonl'
    append_result(str(results), dict(spec, metrics={'mIoU': out['metrics']['mIoU']},
                                     checkpoint=str(Path(out['checkpoint']).resolve())))
    return results


def test_eval_shifts_records_each_shift_and_resumes(study_file: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO_ROOT)
    out = tmp_path / 'robustness.jsonl'
    args = ['--tasks', 'seg', '--results', str(study_file), '--out', str(out), '--val-images',
            '2', '--shifts', 'haze', 'shadow', '--work-root', str(tmp_path / 'w')]
    assert _tool('eval_shifts').main(args) == 0
    recs = _lines(out)
    assert [r['shift'] for r in recs] == ['none', 'haze', 'shadow']
    src = _lines(study_file)[0]
    for r in recs:
        assert r['task'] == 'seg' and r['norm'] == 'GN' and r['seed'] == 0 and r['iters'] == 2
        assert r['checkpoint'] == src['checkpoint'] and r['val_images'] == 2
        assert 0 <= r['metrics']['mIoU'] <= 100 and r['wall_s'] >= 0
        assert set(r['raw_metrics']) >= {'mIoU', 'aAcc'}
        assert all(r.get(k) is not None for k in ENV_FIELDS)
        assert 'eval_shifts' in r['command'] or 'pytest' in r['command']
    assert len({r['key'] for r in recs}) == 3
    # the clean evaluation is the study's own evaluation of that checkpoint, same val images
    assert recs[0]['metrics']['mIoU'] == pytest.approx(src['metrics']['mIoU'], abs=0.01)
    assert _tool('eval_shifts').main(args) == 0  # everything recorded: nothing appended
    assert len(_lines(out)) == 3


def test_test_time_lcn_whole_scene(study_file: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """GN as trained, LCN(7) and LCN(1023) swapped in; 1023 covers every feature map of the
    900x900 scene (padded to 928; the largest, the stem's stride-2 maps, are 464 px) and
    there LCN is GroupNorm: the same metrics as GN."""
    monkeypatch.chdir(REPO_ROOT)
    out = tmp_path / 'ttl.jsonl'
    args = ['--results', str(study_file), '--out', str(out), '--windows', '7', '1023']
    assert _tool('test_time_lcn').main(args) == 0
    recs = _lines(out)
    assert [(r['test_norm'], r['window']) for r in recs] == [('GN', None), ('LCN', 7),
                                                             ('LCN', 1023)]
    for r in recs:
        assert r['scene'] == 'buildings 900x900' and r['trained_norm'] == 'GN'
        assert set(r['metrics']) == {'mIoU scene', 'mIoU val strip'}
        assert all(0 <= v <= 100 for v in r['metrics'].values())
        assert all(r.get(k) is not None for k in ENV_FIELDS)
    assert recs[1]['test_norm_cfg']['num_groups'] == NORMS['GN']['num_groups']
    assert recs[2]['metrics'] == pytest.approx(recs[0]['metrics'], abs=0.05)
    assert _tool('test_time_lcn').main(args) == 0
    assert len(_lines(out)) == 3
