"""Error of the ONNX formulation of LCN against the float64 oracle on issue #14's hard maps.

    python tools/deployment/onnx_accuracy.py [--module lcn_mm/ops/onnx.py] [--json RECORD]

Runs ``local_context_norm_onnx`` (float32 input, groups=1) on ``tests/oracle.py``'s
``hard_maps`` at 64x64 and 256x256, windows 7 and 31, and prints max |y - oracle| per map (the
float32 bound of docs/lcn.md is 1e-3). ``--module`` loads the formulation from another file,
e.g. an older revision's (``git show REV:lcn_mm/ops/onnx.py > /tmp/onnx_old.py``), so that
before and after are measured by the same script against the same oracle.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Callable, Dict

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'tests'))
from oracle import hard_maps, oracle_lcn  # noqa: E402

CASES = [(64, 7), (64, 31), (256, 7), (256, 31)]


def load(path: Path) -> Callable:
    """``local_context_norm_onnx`` from a file (not imported as part of lcn_mm)."""
    spec = importlib.util.spec_from_file_location('onnx_formulation', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.local_context_norm_onnx


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--module', type=Path, default=ROOT / 'lcn_mm/ops/onnx.py')
    ap.add_argument('--json', type=Path, help='write the errors here')
    args = ap.parse_args()
    lcn = load(args.module)
    errors: Dict[str, Dict[str, float]] = {}
    for size, window in CASES:
        key = f'{size}x{size} window {window}'
        errors[key] = {}
        for name, x in sorted(hard_maps(size).items()):
            y = lcn(x, 1, window, window).double()
            errors[key][name] = (y - oracle_lcn(x, 1, window)).abs().max().item()
        print(key, ' '.join(f'{n} {e:.1e}' for n, e in errors[key].items()), flush=True)
    worst = max(e for row in errors.values() for e in row.values())
    print(f'worst {worst:.2e} ({"within" if worst <= 1e-3 else "ABOVE"} 1e-3)')
    if args.json:
        args.json.write_text(json.dumps(dict(command=' '.join(['python'] + sys.argv),
                                             module=str(args.module), errors=errors,
                                             worst=worst), indent=1))


if __name__ == '__main__':
    main()
