"""tools/smoke_demo.py (a quick CPU check) must run: a few Mask R-CNN training steps with LCN."""
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

DEMO = Path(__file__).resolve().parents[1] / 'tools' / 'smoke_demo.py'


def _load_demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location('smoke_demo', DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('norm', ['LCN', 'GN'])
def test_smoke_demo_runs(norm: str, capsys: pytest.CaptureFixture) -> None:
    demo = _load_demo()
    assert demo.main(['--norm', norm, '--iters', '2', '--image-size', '96']) == 0
    out = capsys.readouterr().out
    assert f'36 {norm} layers' in out  # backbone 20 + FPN 8 + bbox head 4 + mask head 4
    assert 'iter   2/2' in out and 'done: loss' in out
