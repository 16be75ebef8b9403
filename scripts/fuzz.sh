#!/usr/bin/env bash
# Fuzzes the DeepSpeed config reader with libFuzzer (clang, ASan + UBSan) for SECONDS (default 60), starting from
# the seed corpus in tests/fuzz/corpus. New interesting inputs go to build-fuzz/corpus; crashes to
# tests/fuzz/findings/ (add the input to the corpus once fixed). Usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_TO_RUN="${1:-60}"
BUILD="${ZEROTRAIN_FUZZ_BUILD_DIR:-$ROOT/build-fuzz}"
command -v clang++ >/dev/null || { echo "fuzz: clang++ not found (scripts/bootstrap.sh installs it)" >&2; exit 1; }
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER=clang++ -DZEROTRAIN_BUILD_TESTS=OFF -DZEROTRAIN_BUILD_FUZZERS=ON \
    -DZEROTRAIN_TORCH=OFF -DZEROTRAIN_CUDA=OFF -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address,undefined" >/dev/null
fi
cmake --build "$BUILD" --target config_fuzzer >/dev/null
mkdir -p "$BUILD/corpus" "$ROOT/tests/fuzz/findings"
echo "fuzz: config_fuzzer for ${SECONDS_TO_RUN}s"
"$BUILD/tests/fuzz/config_fuzzer" "$BUILD/corpus" "$ROOT/tests/fuzz/corpus" \
  -max_total_time="$SECONDS_TO_RUN" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
  -dict="$ROOT/tests/fuzz/config.dict" -artifact_prefix="$ROOT/tests/fuzz/findings/" -print_final_stats=1 2>&1 |
  grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|ERROR|SUMMARY|==[0-9]+==)" || true
status=${PIPESTATUS[0]}
[ "$status" -eq 0 ] && echo "fuzz: no crash in ${SECONDS_TO_RUN}s" || echo "fuzz: FAILED (see tests/fuzz/findings/)" >&2
exit "$status"
