#!/usr/bin/env bash
# Create or update the project virtualenv (.venv/) with the pinned OpenMMLab stack.
#
# Usage: tools/setup_env.sh [STAMP_FILE]
#   Called by `make env`. STAMP_FILE (e.g. .venv/.stamp-<hash of the env inputs>) is created
#   on success, and older .venv/.stamp-* files are removed, so make re-runs this script only
#   when requirements/*, setup.py or this script change (or .venv is deleted).
#
# Environment:
#   LCN_WHEELHOUSE  optional folder of prebuilt wheels (e.g. the mmcv 2.1.0 wheel), passed to
#                   pip as an extra --find-links. If mmcv has to be built from source and this
#                   folder is writable, the built wheel is saved there for next time.
#   PYTHON          interpreter for the venv (default: python3.11; must be CPython 3.11).
#   VENV            venv folder (default: <repo>/.venv).
#   MAX_JOBS        parallel compile jobs for the mmcv source build (default: nproc).
#   LCN_TORCH_INDEX_URL  optional extra index for the torch install only, e.g.
#                   https://download.pytorch.org/whl/cpu on machines whose pip does not already
#                   provide the CPU wheel (PyPI's Linux torch wheel is the large CUDA build).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PYTHON="${PYTHON:-python3.11}"
VENV="${VENV:-$ROOT/.venv}"
STAMP="${1:-}"
TORCH_VERSION="2.13.0"
MMCV_VERSION="2.1.0"
TRITON_VERSION="3.6.0"   # the Triton of the GPU machines this was checked on (torch 2.11 cu130)
export PIP_DISABLE_PIP_VERSION_CHECK=1

log() { printf '[setup_env] %s\n' "$*" >&2; }

# --- wheel cache --------------------------------------------------------------------------
FIND_LINKS=()
WHEELHOUSE=""
if [[ -n "${LCN_WHEELHOUSE:-}" ]]; then
    if [[ -d "$LCN_WHEELHOUSE" ]]; then
        WHEELHOUSE="$(cd "$LCN_WHEELHOUSE" && pwd)"
        FIND_LINKS=(--find-links "$WHEELHOUSE")
        log "using wheel cache LCN_WHEELHOUSE=$WHEELHOUSE"
    else
        log "WARNING: LCN_WHEELHOUSE=$LCN_WHEELHOUSE is not a folder; ignoring it"
    fi
fi

wheelhouse_writable() {
    # A folder with no write bit at all (e.g. a read-only copy of shared/wheels) counts as
    # read-only even for root; otherwise really try to write (`test -w` is always true as root).
    [[ -n "$WHEELHOUSE" ]] || return 1
    [[ -n "$(find "$WHEELHOUSE" -maxdepth 0 -perm /222)" ]] || return 1
    local probe
    probe="$(mktemp -p "$WHEELHOUSE" .write-probe.XXXXXX 2>/dev/null)" || return 1
    rm -f "$probe"
}

# --- venv ---------------------------------------------------------------------------------
venv_ok() {
    [[ -x "$VENV/bin/python" ]] &&
        "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null
}
if ! venv_ok; then
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
        log "ERROR: $PYTHON is not Python 3.11 (set PYTHON=/path/to/python3.11)"
        exit 1
    fi
    log "creating $VENV with $("$PYTHON" --version 2>&1)"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
pip_install() { "$VPY" -m pip install --quiet "${FIND_LINKS[@]}" "$@"; }

# --- 1. torch, then build tools (two calls: torch 2.13 declares setuptools>=77, we need <70) -
if "$VPY" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
    log "torch $TORCH_VERSION already installed"
else
    log "installing torch==$TORCH_VERSION"
    TORCH_INDEX=()
    [[ -n "${LCN_TORCH_INDEX_URL:-}" ]] && TORCH_INDEX=(--extra-index-url "$LCN_TORCH_INDEX_URL")
    pip_install "${TORCH_INDEX[@]}" "torch==$TORCH_VERSION"
fi
log "installing build tools (requirements/build.txt)"
# --no-deps: these three have no dependencies, and it skips pip's conflict report about torch's
# (unneeded at runtime) setuptools>=77 requirement.
pip_install --no-deps -r requirements/build.txt

# --- 2. mmcv with compiled ops ------------------------------------------------------------
mmcv_ok() {
    "$VPY" - <<EOF 2>/dev/null
import sys
import mmcv
from mmcv.utils import ext_loader
ext_loader.load_ext('_ext', ['nms'])
sys.exit(mmcv.__version__ != '$MMCV_VERSION')
EOF
}
mmcv_in_wheelhouse() {
    # Ask pip itself whether the cache holds an mmcv wheel that fits this interpreter/platform.
    [[ -n "$WHEELHOUSE" ]] && "$VPY" -m pip install --quiet --dry-run --no-index --no-deps \
        --find-links "$WHEELHOUSE" "mmcv==$MMCV_VERSION" >/dev/null 2>&1
}
show_progress() {
    # Keep pip -v output readable: ninja's "[n/77]" compile lines (source file only), errors,
    # and pip's own status lines.
    awk '
        /\[[0-9]+\/[0-9]+\]/ { match($0, /\[[0-9]+\/[0-9]+\]/); step = substr($0, RSTART, RLENGTH);
                               src = ""; if (match($0, /[A-Za-z0-9_]+\.(cpp|cu|cc)( |$)/))
                                   src = substr($0, RSTART, RLENGTH);
                               print "  mmcv build " step " " src; fflush(); next }
        /[Ee]rror|Building wheel|Created wheel|Successfully|Saved/ { print; fflush() }
    '
}

MMCV_READY=0
if mmcv_ok; then
    MMCV_READY=1
    log "mmcv $MMCV_VERSION with compiled ops already installed"
elif mmcv_in_wheelhouse; then
    log "mmcv $MMCV_VERSION: using the prebuilt wheel from the wheel cache"
else
    if wheelhouse_writable; then
        WHEEL_DIR="$WHEELHOUSE"
    else
        WHEEL_DIR="$VENV/.mmcv-wheel"
        mkdir -p "$WHEEL_DIR"
    fi
    log "building mmcv $MMCV_VERSION with ops from the PyPI sdist into $WHEEL_DIR"
    log "  this compiles 77 C++ files: about 25 minutes on 2 cores; progress below"
    start=$(date +%s)
    MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
        "$VPY" -m pip wheel -v --no-build-isolation --no-deps "${FIND_LINKS[@]}" \
        -w "$WHEEL_DIR" "mmcv==$MMCV_VERSION" 2>&1 | show_progress
    log "mmcv build took $(( $(date +%s) - start )) s"
    FIND_LINKS+=(--find-links "$WHEEL_DIR")
fi

# --- 3. the rest of the stack (mmcv comes from the wheel found/built above), then lcn_mm ----
log "installing mmcv/mmengine/mmdet/mmseg and the runtime/optional/test requirements"
pip_install --no-build-isolation \
    -r requirements/mminstall.txt -r requirements/runtime.txt \
    -r requirements/optional.txt -r requirements/tests.txt
# openmim without its dependencies (requirements/openmim.txt says why); tests.txt has the ones
# `mim list/search/train/test/run` import.
log "installing openmim (requirements/openmim.txt, --no-deps)"
pip_install --no-deps -r requirements/openmim.txt
# Triton: CUDA builds of torch bring their own (the GPU kernels use it); on a CPU-only torch,
# install the version those builds use so tests/test_lcn_gpu.py runs the same kernels under
# Triton's CPU interpreter.
if ! "$VPY" -c "import triton" 2>/dev/null; then
    log "installing triton==$TRITON_VERSION (the GPU kernels' tests run in its CPU interpreter)"
    pip_install --no-deps "triton==$TRITON_VERSION"
fi
if [[ $MMCV_READY == 0 ]] && ! mmcv_ok; then
    log "ERROR: mmcv $MMCV_VERSION is installed but its compiled ops do not load"
    exit 1
fi
log "installing lcn_mm in editable mode"
pip_install --no-build-isolation --no-deps -e .

# --- 4. sanity check ----------------------------------------------------------------------
"$VPY" - <<'EOF'
import mmcv, mmdet, mmengine, mmseg, torch
from mmcv.ops import nms  # noqa: F401  (needs the compiled _ext)
import lcn_mm  # noqa: F401
from lcn_mm.version import __version__ as lcn_version
print(f'[setup_env] OK: torch {torch.__version__}, mmengine {mmengine.__version__}, '
      f'mmcv {mmcv.__version__}, mmdet {mmdet.__version__}, mmseg {mmseg.__version__}, '
      f'lcn_mm {lcn_version}')
EOF

if [[ -n "$STAMP" ]]; then
    rm -f "$VENV"/.stamp-*
    touch "$STAMP"
fi
