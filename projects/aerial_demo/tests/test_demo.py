"""`make demo` and tools/compare_norms.py: the demo pipeline per task, tiny, and the study's
aggregation (resumable results file -> exact mean ± std table)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import lcn_mm  # noqa: F401
from aerial_demo import NORMS, TASKS
from aerial_demo.demo import MARGIN, failure_messages, format_demo_table, plot_demo, run_task
from aerial_demo.pictures import plot_task
from aerial_demo.study import (append_result, batch_size_table, batch_size_tasks, load_results,
                               make_spec, mean_std, norm_table, plot_study, run_key, run_specs)
from aerial_demo.tasks import DEMO_TASKS, REPO_ROOT, all_background_miou
from lcn_mm.apis.norm_swap import norm_layer_summary
from lcn_mm.testing import build_model


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO_ROOT)  # the demo configs' data paths are relative to it


@pytest.mark.parametrize('task', DEMO_TASKS)  # what make demo runs; 'seg' shares the model
def test_demo_pipeline_two_iterations(task: str, tmp_path: Path) -> None:
    """Runner training (2 iterations, batch 2) and evaluation on 2 val images, per task."""
    res = run_task(task, tmp_path, iters=2, batch_size=2, val_images=2, threads=2)
    assert [r['metric'] for r in res['rows']] == list(TASKS[task].metrics.values())
    assert res['norm']['type'] == 'LCN' and res['iters'] == 2 and res['batch_size'] == 2
    for r in res['rows']:
        assert 0 <= r['value'] <= 100 and 0 <= r['baseline'] <= 100
        assert r['beats'] == (r['value'] >= r['baseline'] + MARGIN)
    assert (tmp_path / task / 'iter_2.pth').exists()
    assert 'metrics' in json.loads((tmp_path / task / 'metrics.json').read_text())
    table = format_demo_table([res])
    assert TASKS[task].title in table
    plot_demo([res], str(tmp_path / 'demo.png'))
    assert (tmp_path / 'demo.png').stat().st_size > 0
    stats = plot_task(res['title'], res['cfg'], res['checkpoint'], str(tmp_path / 'pic.png'),
                      compare={'GN': (res['cfg'], res['checkpoint'])})
    assert (tmp_path / 'pic.png').stat().st_size > 0 and Path(stats['image']).exists()


def test_failure_message_says_what_and_how_to_rerun() -> None:
    res = dict(task='inst', tag='', title='T', seed=2, iters=300, baseline_name='untrained model',
               rows=[dict(metric='mask AP50', value=1.5, baseline=0.5, headline=True,
                          beats=False), dict(metric='x', value=0, baseline=0, headline=False,
                                             beats=False)])
    (msg, ) = failure_messages([res], threads=2)
    for part in ("task 'inst'", 'seed 2', 'mask AP50 = 1.5', '0.5 (untrained model) + 2',
                 '--tasks inst --seed 2 --iters 600 --threads 2'):
        assert part in msg


def test_all_background_baseline() -> None:
    """Buildings are 2.75 % of the val pixels (docs/data.md): (97.25 + 0) / 2."""
    miou = all_background_miou(REPO_ROOT / 'data/spacenet_seg/buildings/ann_dir/val')
    assert miou == pytest.approx(48.625, abs=0.01)


@pytest.mark.parametrize('norm', list(NORMS))
def test_every_study_norm_reaches_every_layer(norm: str) -> None:
    """swap_norms puts each study norm into all norm slots of the seg model (no LCN left)."""
    from aerial_demo import prepare_cfg
    cfg = prepare_cfg(REPO_ROOT / TASKS['seg'].config, 'unused', norm_cfg=NORMS[norm])
    model = build_model(cfg, init=False)
    lcn_left = sum(type(m) is lcn_mm.LCN for m in model.modules())  # PN subclasses LCN
    assert (lcn_left > 0) == (norm == 'LCN')
    if norm in ('BN', 'GN'):
        assert set(norm_layer_summary(model)) <= {'BatchNorm2d', '_BatchNormXd', 'GroupNorm'}
    out = model(torch.randn(2, 3, 64, 64), mode='tensor')
    assert torch.isfinite(out).all()


def _fake(task: str, norm: str, seed: int, batch: int, value: float) -> dict:
    metrics = {'det': ['bbox mAP'], 'inst': ['bbox mAP', 'mask mAP'], 'seg': ['mIoU']}[task]
    return dict(make_spec(task, norm, seed=seed, batch_size=batch),
                metrics={m: value for m in metrics})


def test_study_table_from_results_file(tmp_path: Path) -> None:
    results = tmp_path / 'results.jsonl'
    for rec in [_fake('seg', 'LCN', 0, 4, 60.0), _fake('seg', 'LCN', 1, 4, 62.0),
                _fake('seg', 'BN', 0, 4, 55.5), _fake('det', 'GN', 0, 4, 10.0),
                _fake('det', 'GN', 1, 4, 12.0), _fake('det', 'GN', 2, 4, 14.0),
                _fake('seg', 'BN', 0, 1, 40.0), _fake('seg', 'LCN', 0, 1, 61.0)]:
        append_result(str(results), rec)
    append_result(str(results), _fake('seg', 'BN', 0, 1, 99.0))  # recorded twice: first counts
    with results.open('a') as f:
        f.write('{"truncated": ')  # a run killed while writing is ignored
    records = load_results(str(results))
    assert len(records) == 8
    lines = norm_table(records).splitlines()
    assert lines[0] == ('| norm | NEON tree detection: bbox mAP | SpaceNet building instances: '
                        'bbox mAP | SpaceNet building instances: mask mAP | '
                        'SpaceNet building segmentation: mIoU |')
    assert lines[2] == '| BN | not run | not run | not run | 55.5 (n=1) |'
    assert lines[3] == '| GN | 12.0 ± 2.0 (n=3) | not run | not run | not run |'
    assert lines[-1] == '| LCN | not run | not run | not run | 61.0 ± 1.4 (n=2) |'
    assert [line.split(' |')[0] for line in lines[2:]] == [
        '| BN', '| GN', '| IN', '| LN', '| PN', '| LCN']
    assert batch_size_tasks(records) == ['seg']  # GN det runs are all at batch 4
    bs = batch_size_table(records, 'seg').splitlines()
    assert bs[2] == '| BN | 40.0 (n=1) | not run | 55.5 (n=1) |'
    assert bs[-1] == '| LCN | 61.0 (n=1) | not run | 61.0 ± 1.4 (n=2) |'
    written = plot_study(records, str(tmp_path))
    assert {Path(p).name for p in written} == {'norms.png', 'batch_size.png'}


def test_mean_std_text() -> None:
    assert mean_std([]) == 'not run'
    assert mean_std([1.25]) == '1.2 (n=1)' or mean_std([1.25]) == '1.3 (n=1)'
    assert mean_std([1.0, 2.0, 3.0]) == '2.0 ± 1.0 (n=3)'


def test_study_skips_recorded_runs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Resumable: a spec whose key is in the results file is not run again."""
    spec = make_spec('seg', 'GN', seed=3, batch_size=2, iters=8)
    assert spec['iters'] == 16  # same images seen as 8 iterations at batch 4
    results = tmp_path / 'r.jsonl'
    append_result(str(results), dict(spec, metrics={'mIoU': 50.0}))
    assert run_specs([spec], str(results), str(tmp_path / 'runs')) == []
    assert 'skip (recorded)' in capsys.readouterr().out
    other = make_spec('seg', 'GN', seed=4, batch_size=2, iters=8)
    assert run_key(other) != run_key(spec)


def test_gn_checkpoint_converts_to_lcn(tmp_path: Path) -> None:
    """The transfer path: a GN seg model's checkpoint loads strictly into the LCN model."""
    from aerial_demo import prepare_cfg
    from aerial_demo.transfer import convert_checkpoint
    gn = build_model(prepare_cfg(REPO_ROOT / TASKS['seg'].config, 'unused',
                                 norm_cfg=NORMS['GN']), init=False)
    torch.save({'state_dict': gn.state_dict()}, tmp_path / 'gn.pth')
    convert_checkpoint(str(tmp_path / 'gn.pth'), str(tmp_path / 'lcn.pth'))
    # a 63-px window covers every map of a 64-px input: there LCN is exactly GN
    from aerial_demo import norm_cfg_for
    lcn = build_model(prepare_cfg(REPO_ROOT / TASKS['seg'].config, 'unused',
                                  norm_cfg=norm_cfg_for('LCN', window_size=63)), init=False)
    sd = torch.load(tmp_path / 'lcn.pth', weights_only=False)['state_dict']
    lcn.load_state_dict(sd, strict=True)
    assert any(k.endswith('lcn1.weight') for k in sd)
    x = torch.randn(1, 3, 64, 64)
    gn.eval(), lcn.eval()
    with torch.no_grad():
        torch.testing.assert_close(lcn(x, mode='tensor'), gn(x, mode='tensor'),
                                   rtol=1e-3, atol=1e-3)


def test_records_tables_worst_case_over_complete_runs() -> None:
    """Only runs covering every demo task count; the spare is the worst over those runs."""
    from aerial_demo.demo import records_tables

    def rec(run_id: str, task: str, value: float, seed: int = 0, tag: str = '') -> dict:
        return dict(run_id=run_id, task=task, tag=tag, title=task.upper(), margin=MARGIN,
                    seed=seed, threads=1, wall_s=60.0, passed=value >= 2,
                    rows=[dict(metric='m', value=value, baseline=0.0, headline=True)],
                    env=dict(cpu_capability='AVX2', ATEN_CPU_CAPABILITY=None, cpu='cpu',
                             loadavg_1m=0.5))
    records = [rec('a', t, 10.0 + i) for i, t in enumerate(DEMO_TASKS)]
    records += [rec('b', t, 5.0, seed=1) for t in DEMO_TASKS]
    records += [rec('b', DEMO_TASKS[-1], 1.0, tag='gn'),  # a twin does not count
                rec('c', DEMO_TASKS[0], 0.5)]  # an incomplete run does not count
    metrics, runs = records_tables(records)
    first = f'| {DEMO_TASKS[0].upper()}'
    row = next(line for line in metrics.splitlines() if line.startswith(first))
    assert row == f'| {DEMO_TASKS[0].upper()} | m | 2 | 5.0 | 10.0 | 0.0 | +3.0 |'
    assert [line.split(' | ')[0] for line in runs.splitlines()[2:]] == ['| a', '| b']
    # each run's headline values, in task order; run b's time includes its GN twin (the whole
    # demo's time)
    assert runs.splitlines()[0].count(' m |') == len(DEMO_TASKS)
    values_a = ' | '.join(f'{10.0 + i:.1f}' for i in range(len(DEMO_TASKS)))
    assert f'| 0.5 | {values_a} | {len(DEMO_TASKS):.1f} min | yes |' in runs.splitlines()[2]
    values_b = ' | '.join(['5.0'] * len(DEMO_TASKS))
    assert runs.splitlines()[-1].endswith(f'| {values_b} | {len(DEMO_TASKS) + 1:.1f} min | yes |')
