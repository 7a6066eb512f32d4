"""Session-wide test setup (imported before any test module)."""
import os

import torch

if not torch.cuda.is_available():
    # Triton reads TRITON_INTERPRET when it is first imported. torch.compile
    # (tests/test_deploy.py) imports it too, so it is set here, before any test module runs:
    # the Triton kernel tests (tests/test_lcn_gpu.py) then run under the interpreter in any
    # test order.
    os.environ.setdefault('TRITON_INTERPRET', '1')
