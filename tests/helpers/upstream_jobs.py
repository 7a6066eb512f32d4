"""Fresh-process runner for tests/test_apis/test_upstream_configs.py.

``python upstream_jobs.py JOBS.json RESULTS.json`` runs every job of JOBS.json in this one
process and writes one result per job. It does not import lcn_mm by itself before the first
``user`` job's config is read, so that job shows whether the config's ``custom_imports``
registers LCN. Kinds of job:

* ``ref``: build the config's model as it is (no pretrained weights) and count its norms;
* ``user``: a user config file read with ``Config.fromfile``, built, one training step;
* ``train``: ``tools/train.py`` with ``args``, run up to its Runner (``Runner.train`` is
  replaced): norms of the Runner's model, the prepared config dumped to ``dump``, one training
  step. Only RoI counts are capped and pretrained inits dropped, after the dump, so the step is
  quick and offline.

Each result holds ``counts`` (norm layers by class name), ``loss``, ``lcn_norm_cfgs`` (every
distinct LCN ``*norm_cfg`` of the config used), ``init_types`` (``init_cfg``/``pretrained``
of the config), and for ``user`` jobs ``lcn_mm_before``/``lcn_mm_after`` (whether lcn_mm was
imported before/after reading the config).
"""
from __future__ import annotations

import copy
import json
import math
import runpy
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def init_types(node: Any, path: str = 'model') -> dict[str, str]:
    """``{path: type}`` of every ``init_cfg`` (and ``pretrained`` string) under ``node``."""
    found: dict[str, str] = {}
    if isinstance(node, dict):
        for key, value in node.items():
            sub = f'{path}.{key}'
            if key == 'init_cfg' and value is not None:
                for i, init in enumerate(value if isinstance(value, list) else [value]):
                    found[f'{sub}[{i}]'] = str(init.get('type'))
            elif key == 'pretrained' and isinstance(value, str):
                found[sub] = 'pretrained'
            else:
                found.update(init_types(value, sub))
    elif isinstance(node, (list, tuple)):
        for i, item in enumerate(node):
            found.update(init_types(item, f'{path}[{i}]'))
    return found


def lcn_norm_cfgs(node: Any) -> list[dict]:
    """Distinct ``*norm_cfg`` dicts of type LCN under ``node``."""
    found: list[dict] = []

    def walk(n: Any) -> None:
        if isinstance(n, dict):
            for key, value in n.items():
                if 'norm_cfg' in str(key) and isinstance(value, dict) and \
                        value.get('type') == 'LCN' and value not in found:
                    found.append(dict(value))
                walk(value)
        elif isinstance(n, (list, tuple)):
            for item in n:
                walk(item)

    walk(node)
    return found


def _plain(cfg: Any) -> dict:
    return cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg)


def step(model: Any, cfg: Any) -> float:
    """One training step of ``model`` on a 64x64 synthetic batch; the total loss."""
    from lcn_mm.testing import demo_batch, loss_step
    return float(loss_step(model, demo_batch(cfg, 64)))


def run_ref(job: dict) -> dict:
    from lcn_mm.apis.config import load_config
    from lcn_mm.apis.norm_swap import norm_layer_summary
    from lcn_mm.testing import build_model
    cfg = load_config(job['config'])
    return dict(counts=dict(norm_layer_summary(build_model(cfg, init=False))),
                init_types=init_types(_plain(cfg)['model']))


def run_user(job: dict) -> dict:
    before = 'lcn_mm' in sys.modules
    from mmengine.config import Config
    cfg = Config.fromfile(job['config'])
    after = 'lcn_mm' in sys.modules
    from lcn_mm.apis.norm_swap import norm_layer_summary
    from lcn_mm.testing import build_model, limit_rois
    plain = _plain(cfg)
    limit_rois(cfg)
    model = build_model(cfg)
    return dict(counts=dict(norm_layer_summary(model)), loss=step(model, cfg),
                lcn_norm_cfgs=lcn_norm_cfgs(plain['model']),
                init_types=init_types(plain['model']),
                lcn_mm_before=before, lcn_mm_after=after)


def run_train(job: dict) -> dict:
    from mmengine.runner import Runner

    import lcn_mm.apis.cli as cli
    from lcn_mm.apis.norm_swap import norm_layer_summary
    from lcn_mm.testing import disable_pretrained, limit_rois

    seen: dict = {}
    build_runner = cli.build_runner

    def patched_build_runner(cfg: Any) -> Any:
        seen['cfg'] = _plain(copy.deepcopy(cfg))  # as tools/train.py prepared it
        cfg.dump(job['dump'])
        limit_rois(cfg)
        disable_pretrained(cfg)
        return build_runner(cfg)

    cli.build_runner = patched_build_runner  # tools/train.py imports it from lcn_mm.apis.cli
    Runner.train = lambda self: seen.update(runner=self)
    argv = sys.argv
    sys.argv = [str(ROOT / 'tools/train.py'), *job['args']]
    try:
        runpy.run_path(str(ROOT / 'tools/train.py'), run_name='__main__')
    finally:
        sys.argv = argv
        cli.build_runner = build_runner
    runner = seen['runner']
    runner.model.init_weights()
    return dict(counts=dict(norm_layer_summary(runner.model)), loss=step(runner.model, runner.cfg),
                lcn_norm_cfgs=lcn_norm_cfgs(seen['cfg']['model']),
                init_types=init_types(seen['cfg']['model']),
                custom_imports=seen['cfg'].get('custom_imports'))


def main() -> None:
    jobs = json.loads(Path(sys.argv[1]).read_text())
    results: dict[str, dict] = {}
    # user jobs first: the first one must import lcn_mm through its custom_imports
    for job in sorted(jobs, key=lambda j: j['kind'] != 'user'):
        try:
            result = dict(user=run_user, ref=run_ref, train=run_train)[job['kind']](job)
            if 'loss' in result and not math.isfinite(result['loss']):
                result['error'] = f'loss is {result["loss"]}'
        except (Exception, SystemExit) as exc:  # per job (the tools exit 2 on bad input)
            import traceback
            result = dict(error=f'{type(exc).__name__}: {exc}\n{traceback.format_exc()}')
        results[job['name']] = result
    Path(sys.argv[2]).write_text(json.dumps(results, indent=1, default=str))


if __name__ == '__main__':
    main()
