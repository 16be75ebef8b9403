#!/usr/bin/env bash
# Sets up a fresh machine for zerotrain and configures the build in build/:
#   1. the Debian packages the build needs (apt-get; skipped when all are installed);
#   2. a Python with torch==2.11.0: an existing one (the GPU machines ship 2.11.0+cu130 in python3), else a
#      project .venv where pip installs torch==2.11.0 (the PyPI x86-64 wheel is a CUDA build; it runs on CPU);
#   3. cmake -G Ninja -B build against that torch.
# Idempotent: a second run only re-checks. Environment: ZEROTRAIN_BUILD_DIR (default build),
# ZEROTRAIN_BUILD_TYPE (default RelWithDebInfo), ZEROTRAIN_PYTHON (a python3 to use instead of searching).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${ZEROTRAIN_BUILD_DIR:-$ROOT/build}"
TORCH_VERSION="2.11.0"
DEB_PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config clang
  nlohmann-json3-dev libcli11-dev libfmt-dev libspdlog-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libopenmpi-dev openmpi-bin libhwy-dev liburing-dev pdsh
)

log() { printf '[bootstrap] %s\n' "$*" >&2; }

install_debian_packages() {
  command -v dpkg-query >/dev/null || { log "not a Debian system: install the equivalents of: ${DEB_PACKAGES[*]}"; return; }
  local missing=()
  for p in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return
  log "installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

torch_ok() {  # $1: a python; true when it imports torch $TORCH_VERSION (any local build suffix)
  "$1" - <<PY 2>/dev/null
import torch, sys
sys.exit(0 if torch.__version__.split("+")[0] == "$TORCH_VERSION" else 1)
PY
}

find_python() {
  if [ -n "${ZEROTRAIN_PYTHON:-}" ]; then echo "$ZEROTRAIN_PYTHON"; return; fi
  if [ -x "$ROOT/.venv/bin/python" ] && torch_ok "$ROOT/.venv/bin/python"; then echo "$ROOT/.venv/bin/python"; return; fi
  if command -v python3 >/dev/null && torch_ok "$(command -v python3)"; then command -v python3; return; fi
  log "creating $ROOT/.venv with torch==$TORCH_VERSION (a few GB of CUDA runtime wheels; runs on CPU too)"
  python3 -m venv "$ROOT/.venv"
  "$ROOT/.venv/bin/pip" install -q --upgrade pip >&2
  "$ROOT/.venv/bin/pip" install -q "torch==$TORCH_VERSION" numpy pytest >&2
  echo "$ROOT/.venv/bin/python"
}

install_debian_packages
PYTHON="$(find_python)"
torch_ok "$PYTHON" || { log "$PYTHON does not import torch==$TORCH_VERSION"; exit 1; }
# What the tests and the Python package build need next to torch, when missing (the offline GPU machines have
# pytest and transformers but cannot install anything: a failure there is only logged): pytest, scikit-build-core
# (pip install .), transformers and accelerate (the Hugging Face tests), wandb and comet_ml (the monitors' tests, which
# run their clients offline).
PY_PACKAGES=(pytest:pytest scikit_build_core:scikit-build-core transformers:transformers accelerate:accelerate
             wandb:wandb comet_ml:comet_ml)
missing_py=()
for entry in "${PY_PACKAGES[@]}"; do
  "$PYTHON" -c "import ${entry%%:*}" 2>/dev/null || missing_py+=("${entry#*:}")
done
if [ ${#missing_py[@]} -gt 0 ]; then
  log "installing Python packages: ${missing_py[*]}"
  "$PYTHON" -m pip install -q "${missing_py[@]}" >&2 || log "could not install ${missing_py[*]}"
fi
TORCH_PREFIX="$("$PYTHON" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')"
log "python: $PYTHON (torch $("$PYTHON" -c 'import torch; print(torch.__version__)'))"

if [ ! -f "$BUILD_DIR/CMakeCache.txt" ] || [ "${ZEROTRAIN_RECONFIGURE:-0}" = 1 ]; then
  cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja \
    -DCMAKE_BUILD_TYPE="${ZEROTRAIN_BUILD_TYPE:-RelWithDebInfo}" \
    -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" -DPython_EXECUTABLE="$PYTHON" >&2
fi
echo "$PYTHON" > "$BUILD_DIR/python-path.txt"
log "configured $BUILD_DIR"
