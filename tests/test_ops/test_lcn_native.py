"""Building and loading the fused CPU kernels, and the fallback when that fails."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from lcn_mm.ops import local_context_norm, native
from oracle import oracle_lcn


@pytest.fixture
def fresh_native(monkeypatch, tmp_path):
    """A native module that has not loaded anything yet and caches into tmp_path."""
    monkeypatch.setattr(native, '_lib', None)
    monkeypatch.setattr(native, '_load_failed', False)
    monkeypatch.setenv('LCN_MM_CACHE', str(tmp_path))
    return tmp_path


def test_build_is_cached_and_atomic(fresh_native):
    assert native.library() is not None
    built = list(fresh_native.glob('liblcn_cpu_*.so'))
    assert len(built) == 1 and not list(fresh_native.glob('*.so.*'))
    # A second load in a fresh state reuses the cached file (same name, no rebuild).
    mtime = built[0].stat().st_mtime_ns
    native._lib, native._load_failed = None, False
    assert native.library() is not None
    assert built[0].stat().st_mtime_ns == mtime


def test_failed_build_falls_back_with_one_warning(fresh_native, monkeypatch):
    monkeypatch.setenv('CXX', str(fresh_native / 'no-such-compiler'))
    x = torch.randn(2, 8, 9, 9, dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match='could not build the fused CPU kernels') as record:
        y = local_context_norm(x, 2, 3)
        local_context_norm(x, 2, 3)
    assert len([w for w in record if issubclass(w.category, RuntimeWarning)]) == 1
    assert not native.supports(x)
    # The fallback computes the same thing.
    monkeypatch.setattr(native, '_lib', None)
    monkeypatch.setattr(native, '_load_failed', False)
    monkeypatch.delenv('CXX')
    torch.testing.assert_close(y, local_context_norm(x, 2, 3))
    assert native.supports(x)


def test_native_disabled_by_environment(fresh_native, monkeypatch):
    monkeypatch.setenv('LCN_MM_NATIVE', '0')
    assert native.library() is None
    assert not native.supports(torch.randn(1, 2, 3, 3))


def test_thread_count_does_not_change_results():
    x = torch.randn(3, 16, 21, 17)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = local_context_norm(x, 4, 7)
        torch.set_num_threads(2)
        two = local_context_norm(x, 4, 7)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)


def _saved_bytes(fn) -> int:
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_kept_statistics_give_the_recomputed_gradients(dtype, monkeypatch):
    """Groups of 4+ channels keep (mu - K, rstd) for the backward pass; smaller ones, and a
    forced recompute, must give the same gradients (bitwise in float64)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 13, 11, generator=gen, dtype=dtype) * 5 + 40
    w, b = torch.randn(8, generator=gen, dtype=dtype), torch.randn(8, generator=gen, dtype=dtype)
    gy = torch.randn(x.shape, generator=gen, dtype=dtype)

    def grads():
        inputs = [t.clone().requires_grad_(True) for t in (x, w, b)]
        return torch.autograd.grad(local_context_norm(inputs[0], 2, (5, 4), *inputs[1:]),
                                   inputs, gy)

    kept = grads()
    monkeypatch.setattr(native, 'KEEP_STATS_MIN_CPG', 10**9)  # recompute in the backward
    recomputed = grads()
    for a, r in zip(kept, recomputed):
        if dtype == torch.float64:
            assert torch.equal(a, r)
        else:
            torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('channels, groups, ratio',
                         [(32, 4, 1.375), (24, 4, 1.5), (20, 4, 1.0), (16, 8, 1.0)])
def test_saved_bytes_stay_within_one_and_a_half_groupnorm(channels, groups, ratio):
    """cpg >= 6 keeps mu (float64) and rstd, 3/cpg of a float32 x: 1.375x GroupNorm's saved
    bytes at cpg 8, 1.5x at cpg 6; smaller groups recompute the statistics: 1x."""
    x = torch.randn(2, channels, 24, 20, requires_grad=True)
    w = torch.ones(channels, requires_grad=True)
    lcn = _saved_bytes(lambda: local_context_norm(x, groups, 7, w))
    gn = _saved_bytes(lambda: torch.nn.functional.group_norm(x, groups, w))
    assert lcn == pytest.approx(ratio * gn, rel=0.02)


def _compiler() -> str:
    import os
    import shutil
    return os.environ.get('CXX') or shutil.which('c++') or shutil.which('g++')


@pytest.mark.parametrize('content', [b'', b'\x7fELF garbage, not a library'])
def test_corrupt_cached_library_is_rebuilt(fresh_native, content):
    """A zero-byte or garbage file under the cache name must not stick: it is replaced."""
    target = native._target(_compiler())
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # no 'could not build' fallback warning
        assert native.library() is not None
    assert target.stat().st_size > 1000
    assert native.supports(torch.randn(1, 2, 3, 3))


def test_built_library_is_world_readable(fresh_native):
    assert native.library() is not None
    (built,) = fresh_native.glob('liblcn_cpu_*.so')
    assert built.stat().st_mode & 0o777 == 0o755


def test_unwritable_cache_builds_into_a_private_folder(fresh_native, monkeypatch):
    """A cache path that cannot be a folder (here: a file) still gives working kernels."""
    blocker = fresh_native / 'not-a-folder'
    blocker.write_text('')
    monkeypatch.setenv('LCN_MM_CACHE', str(blocker))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert native.library() is not None
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(local_context_norm(x, 2, 3), oracle_lcn(x, 2, 3))


def test_concurrent_processes_build_into_an_empty_cache(tmp_path):
    """Four processes start at once on an empty cache: all get the kernels, one file remains."""
    import os
    import subprocess
    import sys
    code = ("import warnings, torch; "
            'from lcn_mm.ops import native, local_context_norm; '
            'warnings.simplefilter("error", RuntimeWarning); '
            'assert native.library() is not None; '
            'x = torch.randn(1, 4, 6, 6); print(float(local_context_norm(x, 2, 3).abs().sum()))')
    env = dict(os.environ, LCN_MM_CACHE=str(tmp_path / 'cache'), OMP_NUM_THREADS='1')
    root = str(Path(__file__).resolve().parents[1])
    env['PYTHONPATH'] = root + os.pathsep + env.get('PYTHONPATH', '')
    procs = [subprocess.Popen([sys.executable, '-c', code], env=env, cwd=root,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    results = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
    built = list((tmp_path / 'cache').iterdir())
    assert len(built) == 1 and built[0].name.startswith('liblcn_cpu_'), built
    assert built[0].name.endswith('.so')
