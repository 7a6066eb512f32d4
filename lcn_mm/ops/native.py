"""The fused CPU kernels of ``csrc/lcn_cpu.cpp``: built just in time, cached, loaded by ctypes.

The kernels use no PyTorch headers, so the build takes seconds with the system C++ compiler.
The library is cached under ``$LCN_MM_CACHE`` (default ``~/.cache/lcn_mm``), keyed by the
source, the compiler command and the CPU, written atomically with mode 0755, and rebuilt when
the cached file does not load (empty, corrupt, stale); an unwritable cache builds into a
private temporary folder. When no compiler works, LCN falls back to the pure-PyTorch
implementation with one warning. ``LCN_MM_NATIVE=0`` turns the kernels off.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Optional, Tuple

import torch
from torch import Tensor

_SOURCE = Path(__file__).with_name('csrc') / 'lcn_cpu.cpp'
_FLAGS = ['-O3', '-march=native', '-fno-math-errno', '-fopenmp', '-shared', '-fPIC', '-std=c++17']
_ABI_VERSION = 4  # must match lcn_abi_version() in the source: the argument lists below
_lib: Optional[ctypes.CDLL] = None
_load_failed = False

_i64, _dbl, _int, _ptr = ctypes.c_int64, ctypes.c_double, ctypes.c_int, ctypes.c_void_p


def _cpu_id() -> str:
    try:
        info = Path('/proc/cpuinfo').read_text()
    except OSError:
        return platform.processor()
    lines = [ln for ln in info.splitlines() if ln.startswith(('model name', 'flags'))]
    return '\n'.join(sorted(set(lines)))


def _target(compiler: str) -> Path:
    """The cached library's path: keyed by source, compiler command, CPU and machine."""
    key = hashlib.sha256(b'\0'.join([
        _SOURCE.read_bytes(), ' '.join([compiler] + _FLAGS).encode(), _cpu_id().encode(),
        platform.machine().encode()])).hexdigest()[:16]
    cache = Path(os.environ.get('LCN_MM_CACHE', Path.home() / '.cache' / 'lcn_mm'))
    return cache / f'liblcn_cpu_{key}.so'


def _compile(compiler: str, target: Path) -> Path:
    """Build into ``target`` atomically (a temporary file in the same folder, then a rename:
    concurrent builders never see a partial file). If that folder cannot be written, build
    into a private temporary folder instead."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix='.so.tmp', dir=target.parent)
    except OSError:
        target = Path(tempfile.mkdtemp(prefix='lcn_mm-')) / target.name
        fd, tmp = tempfile.mkstemp(suffix='.so.tmp', dir=target.parent)
    os.close(fd)
    try:
        subprocess.run([compiler, *_FLAGS, str(_SOURCE), '-o', tmp], check=True,
                       capture_output=True, text=True, timeout=300)
        os.chmod(tmp, 0o755)  # mkstemp made it 0600: others sharing the cache must read it
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _open(compiler: str) -> ctypes.CDLL:
    """The cached library, or a fresh build when it is missing, empty, corrupt or stale (the
    bad file is replaced, so later processes heal too)."""
    target = _target(compiler)
    if target.exists():
        try:
            return _load(target)
        except (OSError, RuntimeError):
            pass  # truncated/garbage file or another ABI: rebuild over it
    return _load(_compile(compiler, target))


def _load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    _declare(lib)
    return lib


def _declare(lib: ctypes.CDLL) -> None:
    lib.lcn_abi_version.restype = _int
    if lib.lcn_abi_version() != _ABI_VERSION:
        raise RuntimeError(f'kernel ABI {lib.lcn_abi_version()} != {_ABI_VERSION} expected '
                           '(source and loader out of sync)')
    for suffix in ('f32', 'f64'):
        fwd = getattr(lib, f'lcn_forward_{suffix}')
        fwd.argtypes = [_ptr] * 6 + [_i64] * 9 + [_dbl, _int]
        fwd.restype = None
        bwd = getattr(lib, f'lcn_backward_{suffix}')
        bwd.argtypes = [_ptr] * 8 + [_i64] * 9 + [_dbl, _int]
        bwd.restype = None


def library() -> Optional[ctypes.CDLL]:
    """The loaded kernel library, building it on first use; None if unavailable."""
    global _lib, _load_failed
    if _lib is not None or _load_failed:
        return _lib
    if os.environ.get('LCN_MM_NATIVE', '1') == '0':
        _load_failed = True
        return None
    compiler = os.environ.get('CXX') or shutil.which('c++') or shutil.which('g++')
    try:
        if compiler is None:
            raise RuntimeError('no C++ compiler found (set CXX)')
        _lib = _open(compiler)
    except (OSError, RuntimeError, subprocess.SubprocessError) as err:
        detail = getattr(err, 'stderr', '') or err
        warnings.warn(f'lcn_mm: could not build the fused CPU kernels ({detail}); using the '
                      'pure-PyTorch implementation, which is slower', RuntimeWarning)
        _load_failed = True
    return _lib


def supports(x: Tensor) -> bool:
    """Whether the fused kernels can take ``x`` as it is (CPU, contiguous NCHW, fp32/fp64)."""
    return (x.device.type == 'cpu' and x.dtype in (torch.float32, torch.float64)
            and x.is_contiguous() and library() is not None)


def _p(t: Optional[Tensor]) -> Optional[int]:
    return None if t is None else t.data_ptr()


#: Smallest group size whose statistics the forward pass keeps for the backward pass: the maps
#: (mu in float64, rstd in x's dtype) cost 3/cpg of a float32 x, so from 6 channels per group
#: at most 1.5x GroupNorm's saved bytes; smaller groups recompute them.
KEEP_STATS_MIN_CPG = 6


def forward(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], num_groups: int,
            window: Tuple[int, int, int, int], eps: float, keep_state: bool = False
            ) -> Tuple[Tensor, ...]:
    """``(y, *state)``: LCN of a contiguous float32/float64 CPU tensor;
    ``window = (lo_h, hi_h, lo_w, hi_w)``. With ``keep_state`` and groups of at least
    ``KEEP_STATS_MIN_CPG`` channels, ``state`` is the (N, G, H, W) maps of mu (float64:
    rounding it to float32 would cost half an ulp of |mu| in every x - mu) and rstd (x's
    dtype), which spare the backward pass recomputing the window statistics."""
    n, c, h, w = x.shape
    y = torch.empty_like(x)
    keep = keep_state and c // num_groups >= KEEP_STATS_MIN_CPG
    mu = x.new_empty((n, num_groups, h, w), dtype=torch.float64) if keep else None
    rstd = x.new_empty((n, num_groups, h, w)) if keep else None
    weight = None if weight is None else weight.detach().to(x.dtype).contiguous()
    bias = None if bias is None else bias.detach().to(x.dtype).contiguous()
    fn = library().lcn_forward_f32 if x.dtype == torch.float32 else library().lcn_forward_f64
    fn(_p(x), _p(weight), _p(bias), _p(y), _p(mu), _p(rstd), n, num_groups, c // num_groups,
       h, w, *window, eps, torch.get_num_threads())
    return (y, mu, rstd) if keep else (y,)


def backward(x: Tensor, grad_out: Tensor, weight: Optional[Tensor], num_groups: int,
             window: Tuple[int, int, int, int], eps: float, need_x: bool, need_w: bool,
             need_b: bool, mu: Optional[Tensor] = None, rstd: Optional[Tensor] = None
             ) -> Tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor]]:
    """Gradients for x, weight and bias (float64 sums for the latter two), from the maps
    ``forward`` kept or, without them, from window statistics recomputed from ``x``."""
    n, c, h, w = x.shape
    dy = grad_out.to(x.dtype).contiguous()
    dx = torch.empty_like(x) if need_x else None
    dw_part = x.new_empty((n, c), dtype=torch.float64) if need_w else None
    db_part = x.new_empty((n, c), dtype=torch.float64) if need_b else None
    w_cast = None if weight is None else weight.detach().to(x.dtype).contiguous()
    fn = library().lcn_backward_f32 if x.dtype == torch.float32 else library().lcn_backward_f64
    fn(_p(x), _p(dy), _p(w_cast), _p(mu), _p(rstd), _p(dx), _p(dw_part), _p(db_part), n,
       num_groups, c // num_groups, h, w, *window, eps, torch.get_num_threads())
    dw = dw_part.sum(0) if dw_part is not None else None
    db = db_part.sum(0) if db_part is not None else None
    return dx, dw, db
