"""Export an mmseg segmentor or mmdet detector (with LCN) to ONNX and check it in ONNX Runtime.

    python tools/deployment/pytorch2onnx.py CONFIG [--checkpoint CKPT] --shape H W --out FILE

What is exported (tensor mode, after the data preprocessor, i.e. on a normalized NCHW batch):
an mmseg segmentor whole (``EncoderDecoder``: backbone, neck, decode head -> logits); an mmdet
single-stage detector whole (head outputs, before box decoding and NMS); an mmdet two-stage
detector's backbone + neck (the RoI stages need RoIAlign, which has no standard ONNX op).
Batch, height and width are dynamic (height and width in multiples of 32, the strides of the
FPN models). LCN exports as standard ONNX ops (``lcn_mm/ops/onnx.py``).

Checks: ONNX Runtime against PyTorch on a random input at ``--shape`` and at a second, larger
size, and on a real demo image (``--image``, default a tile of ``data/``) resized to
``--shape``. Then the ONNX Runtime latency of the model next to the same model with GroupNorm
in every LCN slot (exported and timed the same way). Exits 1 when a difference exceeds
``--tolerance``.
"""
from __future__ import annotations

import argparse
import copy
import importlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch
from torch import Tensor, nn
from torch.export import Dim

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
import lcn_mm  # noqa: E402,F401  (registers LCN)
from lcn_mm.apis.config import load_config, setup_scope  # noqa: E402
from lcn_mm.apis.errors import run_cli  # noqa: E402

DEMO_IMAGES = {'mmseg': ROOT / 'data/spacenet_seg/buildings/img_dir/train/atlanta_x0128_y0128.jpg',
               'mmdet': ROOT / 'data/neon_trees/images/test/soap_061_x0000_y0000.jpg'}


def lcn_to_gn(cfg: Any) -> Any:
    """A copy of a config (sub)tree with every LCN norm_cfg replaced by GN of the same groups."""
    if isinstance(cfg, dict):
        if cfg.get('type') == 'LCN':
            groups = cfg.get('num_groups')
            if groups is None:
                raise SystemExit('the GN twin needs num_groups in the LCN norm_cfg')
            return dict(type='GN', num_groups=groups,
                        requires_grad=cfg.get('requires_grad', True))
        return type(cfg)({k: lcn_to_gn(v) for k, v in cfg.items()})
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(lcn_to_gn(v) for v in cfg)
    return cfg


def _symbolic_upsample(model: nn.Module) -> int:
    """Replace mmseg's ``Upsample`` (integer scale factor, no fixed size) by ``nn.Upsample``.

    mmseg's computes ``int(h * scale)`` in Python, which freezes the traced output size at the
    example's (the exported graph is then wrong at other sizes); ``nn.Upsample`` keeps it
    symbolic. Exact: with an integer factor both give size ``h * scale`` and the same
    sampling grid. Returns the number of modules replaced.
    """
    from mmseg.models.utils import Upsample
    count = 0
    for name, module in list(model.named_modules()):
        factor = getattr(module, 'scale_factor', None)
        if (isinstance(module, Upsample) and not module.size and isinstance(factor, float)
                and factor.is_integer()):
            parent = model.get_submodule(name.rpartition('.')[0]) if '.' in name else model
            setattr(parent, name.rpartition('.')[2],
                    nn.Upsample(scale_factor=factor, mode=module.mode,
                                align_corners=module.align_corners))
            count += 1
    return count


class TensorMode(nn.Module):
    """The exported part of a model as a function of one normalized batch -> flat tensors."""

    def __init__(self, model: nn.Module, scope: str) -> None:
        super().__init__()
        self.model = model
        if scope == 'mmseg':
            self.part = 'segmentor (backbone + neck + decode head)'
            _symbolic_upsample(model)
        else:
            from mmdet.models.detectors import SingleStageDetector
            self.part = ('detector (backbone + neck + head)'
                         if isinstance(model, SingleStageDetector) else 'backbone + neck')

    def forward(self, x: Tensor) -> List[Tensor]:
        if self.part.startswith('segmentor') or self.part.startswith('detector'):
            out = self.model(x, mode='tensor')
        else:
            out = self.model.extract_feat(x)
        return _flatten(out)


def _flatten(out: Any) -> List[Tensor]:
    if isinstance(out, Tensor):
        return [out]
    return [t for item in out for t in _flatten(item)]


def build(cfg, scope: str, checkpoint: str | None) -> nn.Module:
    registry = importlib.import_module(f'{scope}.registry').MODELS
    model = registry.build(cfg.model)
    if checkpoint:
        from mmengine.runner import load_checkpoint
        load_checkpoint(model, checkpoint, map_location='cpu')
    model.eval()
    return model


def demo_batch(model: nn.Module, image: Path, shape: List[int]) -> Tensor:
    """A real image resized to ``shape`` and normalized by the model's data preprocessor."""
    import mmcv
    img = mmcv.imresize(mmcv.imread(str(image)), (shape[1], shape[0]))
    inputs = [torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))]
    with torch.no_grad():
        return model.data_preprocessor(dict(inputs=inputs), False)['inputs'].float()


def export(wrapper: nn.Module, shape: List[int], path: Path) -> None:
    hb, wb = Dim('h32', min=1, max=256), Dim('w32', min=1, max=256)
    dims = {0: Dim('batch', min=1, max=64), 2: 32 * hb, 3: 32 * wb}
    path.parent.mkdir(parents=True, exist_ok=True)
    # batch 2: an example batch of 1 would specialize it (PyTorch's 0/1 specialization)
    torch.onnx.export(wrapper, (torch.randn(2, 3, *shape),), str(path), dynamo=True,
                      opset_version=18, dynamic_shapes={'x': dims}, verbose=False)


def ort_session(path: Path, threads: int):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=['CPUExecutionProvider'])


def max_diff(session, wrapper: nn.Module, x: Tensor) -> float:
    with torch.no_grad():
        want = wrapper(x)
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert len(got) == len(want)
    return max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want))


def latency_ms(session, x: Tensor, reps: int) -> float:
    feed = {session.get_inputs()[0].name: x.numpy()}
    session.run(None, feed)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def use_formulation(path: Path) -> None:
    """Make LCN export through ``local_context_norm_onnx`` of ``path`` (same process, same
    models and inputs: the fair way to compare two formulations)."""
    import importlib.util

    # the module, not the function of the same name that lcn_mm.ops exports
    lcn_module = importlib.import_module('lcn_mm.ops.local_context_norm')
    spec = importlib.util.spec_from_file_location('lcn_onnx_formulation', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    lcn_module.local_context_norm_onnx = module.local_context_norm_onnx


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('config')
    ap.add_argument('--checkpoint')
    ap.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'), required=True)
    ap.add_argument('--out', type=Path, required=True, help='the .onnx file')
    ap.add_argument('--image', type=Path, help='demo image (default: a tile of data/)')
    ap.add_argument('--tolerance', type=float, default=1e-3,
                    help='largest allowed |ONNX Runtime - PyTorch| of any output')
    ap.add_argument('--threads', type=int, default=2, help='ONNX Runtime and torch threads')
    ap.add_argument('--reps', type=int, default=20, help='timed runs per model (median)')
    ap.add_argument('--no-gn', action='store_true', help='skip the GroupNorm latency twin')
    ap.add_argument('--json', type=Path, help='write the measurements here')
    ap.add_argument('--formulation', type=Path,
                    help='export LCN with local_context_norm_onnx from this file instead of '
                         'lcn_mm/ops/onnx.py (A/B of an older revision: git show '
                         'REV:lcn_mm/ops/onnx.py > FILE)')
    args = ap.parse_args()
    if args.formulation:
        use_formulation(args.formulation)
    if args.shape[0] % 32 or args.shape[1] % 32:
        raise SystemExit('--shape H W must be multiples of 32')
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    cfg = load_config(args.config)
    scope = setup_scope(cfg)   # mmdet or mmseg configs only
    from mmengine.registry import init_default_scope
    init_default_scope(scope)

    model = build(cfg, scope, args.checkpoint)
    wrapper = TensorMode(model, scope).eval()
    print(f'exporting the {wrapper.part} of {args.config} to {args.out}', flush=True)
    export(wrapper, args.shape, args.out)
    session = ort_session(args.out, args.threads)

    h, w = args.shape
    image = args.image or DEMO_IMAGES[scope]
    checks: Dict[str, float] = {
        f'random {h}x{w}': max_diff(session, wrapper, torch.randn(1, 3, h, w)),
        f'random 2x{h + 64}x{w + 96}': max_diff(
            session, wrapper, torch.randn(2, 3, h + 64, w + 96)),
        f'demo image {image.name} {h}x{w}': max_diff(session, wrapper,
                                                     demo_batch(model, image, args.shape)),
    }
    for name, diff in checks.items():
        print(f'max |ONNX Runtime - PyTorch|, {name}: {diff:.3e}')

    x = torch.randn(1, 3, h, w)
    import onnxruntime

    # the command and versions, so that a record can be re-run as it was made
    result: Dict[str, Any] = dict(command=' '.join(['python'] + sys.argv),
                                  torch=torch.__version__, onnxruntime=onnxruntime.__version__,
                                  formulation=str(args.formulation or 'lcn_mm/ops/onnx.py'),
                                  config=args.config, part=wrapper.part, shape=args.shape,
                                  checkpoint=args.checkpoint, threads=args.threads,
                                  reps=args.reps, max_abs_diff=checks,
                                  tolerance=args.tolerance,
                                  onnxruntime_ms=dict(model=latency_ms(session, x, args.reps)))
    if not args.no_gn:
        gn_cfg = copy.deepcopy(cfg)
        gn_cfg.model = lcn_to_gn(cfg.model.to_dict() if hasattr(cfg.model, 'to_dict')
                                 else cfg.model)
        gn_wrapper = TensorMode(build(gn_cfg, scope, None), scope).eval()
        gn_path = args.out.with_name(args.out.stem + '_gn.onnx')
        export(gn_wrapper, args.shape, gn_path)
        gn_session = ort_session(gn_path, args.threads)
        # interleave the timings so that machine noise hits both
        lcn_t, gn_t = [], []
        for _ in range(3):
            lcn_t.append(latency_ms(session, x, max(1, args.reps // 3)))
            gn_t.append(latency_ms(gn_session, x, max(1, args.reps // 3)))
        result['onnxruntime_ms'] = dict(model=statistics.median(lcn_t),
                                        gn_twin=statistics.median(gn_t))
        result['ratio_model_to_gn'] = result['onnxruntime_ms']['model'] / \
            result['onnxruntime_ms']['gn_twin']
    ms = result['onnxruntime_ms']
    line = f'ONNX Runtime latency at 1x3x{h}x{w}, {args.threads} threads: {ms["model"]:.1f} ms'
    if 'gn_twin' in ms:
        line += f'; GN twin {ms["gn_twin"]:.1f} ms; ratio {result["ratio_model_to_gn"]:.2f}x'
    print(line)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    worst = max(checks.values())
    if worst > args.tolerance:
        print(f'FAIL: difference {worst:.3e} above --tolerance {args.tolerance:g}')
        return 1
    print(f'OK: all differences <= {args.tolerance:g}')
    return 0


if __name__ == '__main__':
    run_cli(lambda: sys.exit(main()))  # bad input (config file): one line, exit 2
