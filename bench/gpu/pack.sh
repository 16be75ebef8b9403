#!/usr/bin/env bash
# Packs the logs of bench/gpu/run.sh under $OUT into $OUT/logs.tgz, keeping run.log beside it: the device tool
# returns only a handful of files from $OUT, so a run that writes dozens of logs loses most of them otherwise.
#   bash bench/gpu/run.sh; bash bench/gpu/pack.sh
set -uo pipefail
OUT="${OUT:-/tmp/zt-out}"
[ -d "$OUT" ] || { echo "pack.sh: no $OUT" >&2; exit 1; }
cd "$OUT"
shopt -s nullglob
logs=(*.log)
[ ${#logs[@]} -gt 0 ] || { echo "pack.sh: no logs in $OUT"; exit 0; }
tar czf logs.tgz "${logs[@]}" && for f in "${logs[@]}"; do [ "$f" = run.log ] || rm -f "$f"; done
echo "pack.sh: ${#logs[@]} logs in $OUT/logs.tgz"
