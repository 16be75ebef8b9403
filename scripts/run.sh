#!/usr/bin/env bash
# The main job on a fresh machine: set up, build, then `zerotrain train` a built-in byte-level Llama on the bundled
# corpus with ZeRO stage 2: on every GPU when there are GPUs, else on 2 CPU ranks (mpirun). The loss falls from
# ~5.5 (uniform over 256 bytes) to below 3 in 200 steps. Arguments are passed to `zerotrain train`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${ZEROTRAIN_BUILD_DIR:-$ROOT/build}"
"$ROOT/scripts/bootstrap.sh"
cmake --build "$BUILD_DIR" -j "${ZEROTRAIN_JOBS:-$(nproc)}" --target zerotrain_cli
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec "$BUILD_DIR/zerotrain" train --config "$ROOT/examples/configs/train_cpu.json" --model llama-byte-small \
  --steps 200 --ranks 2 "$@"
