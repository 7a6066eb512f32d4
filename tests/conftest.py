"""Session-wide test setup, imported before any test module.

Makes ``tests/helpers`` importable as ``helpers`` and ``tests/oracle.py`` (the independent
LCN oracle) as ``oracle``, from any test folder (pytest runs in importlib mode).
"""
import os
import sys
import tempfile
from pathlib import Path

# PyTorch keys its compiled-graph cache on the graph, not on a custom operator's Python code,
# so a cache left by another version of lcn_mm would be reused: every test run starts empty.
os.environ.setdefault('TORCHINDUCTOR_CACHE_DIR', tempfile.mkdtemp(prefix='lcn_mm_inductor_'))

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

if not torch.cuda.is_available():
    # Triton reads TRITON_INTERPRET when it is first imported. torch.compile
    # (tests/test_ops/test_deploy.py) imports it too, so it is set here, before any test
    # module runs: the Triton kernel tests (tests/test_ops/test_lcn_gpu.py) then run under the
    # interpreter in any test order.
    os.environ.setdefault('TRITON_INTERPRET', '1')
