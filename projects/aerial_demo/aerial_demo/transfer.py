"""GN -> LCN transfer: fine-tune a GN-trained checkpoint as LCN (the paper's transfer claim).

LCN has GN's per-channel affine parameters, so a GN model converts by renaming its norm keys
(:func:`lcn_mm.apis.convert_state_dict`, ``gn`` -> ``lcn``). The converted model is evaluated
before fine-tuning (``before``) and after ``iters`` iterations as LCN; a control fine-tunes the
same GN checkpoint for the same iterations as GN.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from lcn_mm.apis.checkpoint import convert_state_dict

from .study import append_result, load_results, make_spec, run_key, run_spec

__all__ = ['convert_checkpoint', 'run_transfer']


def convert_checkpoint(src: str, dst: str) -> str:
    """Write ``dst``: the model weights of checkpoint ``src`` with gn/bn keys renamed to lcn."""
    ckpt = torch.load(src, map_location='cpu', weights_only=False)
    sd = ckpt.get('state_dict', ckpt)
    converted = convert_state_dict(sd)
    if not converted.renamed:
        raise ValueError(f'{src}: no GN/BN norm keys to rename')
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    torch.save({'state_dict': converted.state_dict, 'meta': {'converted_from': src}}, dst)
    return dst


def run_transfer(task: str, results: str, work_root: str, iters: Optional[int] = None,
                 seed: int = 0, lr_scale: float = 0.3, threads: Optional[int] = None,
                 window_size: Optional[int] = None) -> None:
    """GN (recorded study run, or trained now) -> LCN fine-tune, and a GN fine-tune control.

    ``window_size``: the LCN window of the fine-tuned model (default: the study's).
    """
    gn_spec = make_spec(task, 'GN', seed=seed)
    records = load_results(results)
    gn = next((r for r in records if run_key(r) == run_key(gn_spec)), None)
    if gn is None or not gn.get('checkpoint') or not Path(gn['checkpoint']).exists():
        print('transfer: training the GN source model first', flush=True)
        gn = run_spec(gn_spec, work_root, threads)
        if not any(run_key(r) == run_key(gn_spec) for r in records):
            append_result(results, gn)
    src = gn['checkpoint']
    dst = str(Path(work_root) / f'{task}_transfer_gn_s{seed}_as_lcn.pth')
    convert_checkpoint(src, dst)
    from mmengine.config import Config

    from .tasks import REPO_ROOT, TASKS
    lr = Config.fromfile(REPO_ROOT / TASKS[task].config).optim_wrapper.optimizer.lr * lr_scale
    done = {run_key(r) for r in load_results(results)}
    for norm, init in (('LCN', dst), ('GN', src)):
        spec = make_spec(task, norm, seed=seed, iters=iters, tag='transfer', lr=lr,
                         load_from=init, window_size=window_size if norm == 'LCN' else None)
        if run_key(spec) in done:
            print(f'transfer: skip (recorded) {norm} from {init}', flush=True)
            continue
        print(f'transfer: fine-tune {norm} from {init} for {spec["iters"]} iters', flush=True)
        rec = run_spec(spec, work_root, threads, eval_untrained=True)
        rec['source'] = dict(norm='GN', metrics=gn['metrics'], iters=gn['iters'])
        append_result(results, rec)
        print(f'transfer: {norm} before {rec["before"]} after {rec["metrics"]}', flush=True)
