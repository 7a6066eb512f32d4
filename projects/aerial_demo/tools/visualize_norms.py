#!/usr/bin/env python
"""Feature maps and predictions of BN, GN and LCN models on one large aerial image.

Uses the seg checkpoints of the norm study (docs/results/study.jsonl: seed 0, batch 4) unless
given with --ckpt NORM=PATH; the numbers shown in the figure go to --record as JSON, with the
command and the checkpoints. Logic and what is shown: aerial_demo/visualize.py.

    python projects/aerial_demo/tools/visualize_norms.py --out docs/figures/norms_illumination.png \
        --record docs/results/norms_illumination.json
"""
import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # aerial_demo
import lcn_mm  # noqa: E402,F401
from aerial_demo import TASKS, prepare_cfg  # noqa: E402
from aerial_demo.records import environment  # noqa: E402
from aerial_demo.study import STUDY_RESULTS, load_results, make_spec, run_key  # noqa: E402
from aerial_demo.tasks import NORMS, REPO_ROOT  # noqa: E402
from aerial_demo.visualize import plot_norm_comparison  # noqa: E402
from lcn_mm.testing import build_model  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--norms', nargs='+', default=['BN', 'GN', 'LCN'])
    p.add_argument('--ckpt', nargs='*', default=[], metavar='NORM=PATH')
    p.add_argument('--results', default=STUDY_RESULTS, help='study records')
    p.add_argument('--dark', type=float, default=0.4, help='brightness at the dark end')
    p.add_argument('--layer', default='layer1', help='backbone stage whose last norm is shown')
    p.add_argument('--out', default='work_dirs/visualize/norms_illumination.png')
    p.add_argument('--record', help='JSON file for the numbers in the figure, checkpoints, command')
    args = p.parse_args(argv)
    ckpts = dict(c.split('=', 1) for c in args.ckpt)
    records = load_results(args.results)
    models = {}
    for norm in args.norms:
        if norm not in ckpts:
            key = run_key(make_spec('seg', norm, seed=0))
            rec = next((r for r in records if run_key(r) == key), None)
            if rec is None or not rec.get('checkpoint'):
                raise SystemExit(f'no {norm} seg checkpoint: run tools/compare_norms.py '
                                 f'--tasks seg --norms {norm} or pass --ckpt {norm}=PATH')
            ckpts[norm] = rec['checkpoint']
        cfg = prepare_cfg(REPO_ROOT / TASKS['seg'].config, 'unused', norm_cfg=NORMS[norm])
        model = build_model(cfg, init=False)
        sd = torch.load(ckpts[norm], map_location='cpu', weights_only=False)['state_dict']
        model.load_state_dict(sd)
        models[norm] = model
    stats = plot_norm_comparison(models, args.out, dark=args.dark, layer=args.layer,
                                 title='Semantic FPN R18 trained from scratch on the demo tiles '
                                 '(tools/compare_norms.py, seed 0, batch 4)')
    print(json.dumps(stats, indent=1))
    if args.record:
        Path(args.record).write_text(json.dumps(dict(
            stats=stats, checkpoints=ckpts, dark=args.dark, layer=args.layer,
            figure=args.out, **environment(REPO_ROOT)), indent=1) + '\n')
    print(f'wrote {args.out} ({Path(args.out).stat().st_size / 1024:.0f} KB)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
