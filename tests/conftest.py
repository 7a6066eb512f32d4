"""Session-wide test setup, imported before any test module.

Makes ``tests/helpers`` importable as ``helpers`` and ``tests/oracle.py`` (the independent
LCN oracle) as ``oracle``, from any test folder (pytest runs in importlib mode).
"""
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

if not torch.cuda.is_available():
    # Triton reads TRITON_INTERPRET when it is first imported. torch.compile
    # (tests/test_ops/test_deploy.py) imports it too, so it is set here, before any test
    # module runs: the Triton kernel tests (tests/test_ops/test_lcn_gpu.py) then run under the
    # interpreter in any test order.
    os.environ.setdefault('TRITON_INTERPRET', '1')
