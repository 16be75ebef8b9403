#!/usr/bin/env bash
# The GPU machines have torch, nvcc and cmake but none of the Debian -dev packages the build uses, and no network.
# This downloads those packages (not installs) into .deps/ (git-ignored), which the device call carries; there,
# bench/gpu/run.sh unpacks them with dpkg -x. Run it here once before a GPU run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$ROOT/.deps"
cd "$ROOT/.deps"
apt-get download nlohmann-json3-dev libcli11-dev libfmt-dev libfmt9 libgtest-dev libgmock-dev googletest 2>/dev/null
ls -1 "$ROOT/.deps"
