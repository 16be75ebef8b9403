#!/usr/bin/env bash
# The main job on a fresh machine: set up, build, then check the example DeepSpeed configs and estimate memory
# for the built-in model sizes. (`zerotrain train` replaces this once the engine lands.)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${ZEROTRAIN_BUILD_DIR:-$ROOT/build}"
"$ROOT/scripts/bootstrap.sh"
cmake --build "$BUILD_DIR" -j "${ZEROTRAIN_JOBS:-$(nproc)}" --target zerotrain_cli
ZT="$BUILD_DIR/zerotrain"
for cfg in "$ROOT"/examples/configs/*.json; do
  echo "=================================================================================================="
  "$ZT" config check "$cfg" --world-size 8
done
echo "=================================================================================================="
"$ZT" estimate --model llama-1.1b --micro-batch 4 --gpus-per-node 2 --gpu-memory-gb 141
echo "=================================================================================================="
"$ZT" estimate --model llama-3-8b --micro-batch 2 --activation-checkpointing --gpus-per-node 8 --gpu-memory-gb 80
