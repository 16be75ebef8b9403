#!/usr/bin/env bash
# Real DeepSpeed (PyPI) as a peer on the GPU machines, which have torch, transformers, nvcc and ninja but no network
# and no package installs. This puts DeepSpeed and the dependencies they lack into .dspkgs/ (git-ignored), which the
# device call carries; bench/peers/train_anchor.py --mode deepspeed_stageN puts it on sys.path. Run it here once.
#   .dspkgs/common/  DeepSpeed (built once here with DS_BUILD_OPS=0: pure Python, ops JIT-built if ever used) and the
#                    pure-Python (or abi3) dependencies, shared by every Python version
#   .dspkgs/pyXY/    the dependencies built for one CPython version (pydantic-core, msgpack), for 3.10, 3.11, 3.12
# Left out, as the GPU machines have them: torch, numpy, nvidia-*, triton, and what transformers brings (packaging,
# tqdm, pyyaml, ...); ninja and nvidia-ml-py too (the ninja binary is there; pynvml is optional to DeepSpeed).
# Environment: DS_VERSION (default 0.19.8), PY_VERSIONS (default "3.10 3.11 3.12"), PYTHON (the Python with torch
# that builds DeepSpeed's wheel; default .venv/bin/python).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
DS_VERSION="${DS_VERSION:-0.19.8}"
PY_VERSIONS="${PY_VERSIONS:-3.10 3.11 3.12}"
DEST="$ROOT/.dspkgs"
DEPS="einops hjson msgpack py-cpuinfo pydantic psutil"
BIN=(--only-binary=:all: --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64
     --platform manylinux_2_28_x86_64)
PIP=("$PY" -m pip --disable-pip-version-check)
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

"$PY" -c 'import torch' || { echo "fetch_deepspeed: $PY has no torch (DeepSpeed's setup.py needs it)" >&2; exit 1; }

# DeepSpeed is an sdist: build it once into a wheel without ops. DS_ACCELERATOR=cuda, as this machine has no GPU and
# would otherwise record the CPU accelerator in the wheel's build info.
"${PIP[@]}" download -q --no-deps --no-binary :all: "deepspeed==$DS_VERSION" -d "$TMP/sdist"
"${PIP[@]}" install -q --target "$TMP/buildtools" wheel "setuptools>=64,<82"
DS_BUILD_OPS=0 DS_ACCELERATOR=cuda PYTHONPATH="$TMP/buildtools" "${PIP[@]}" wheel -q --no-deps --no-build-isolation \
  -w "$TMP/ds" "$TMP"/sdist/deepspeed-*.tar.gz >"$TMP/ds_build.log" 2>&1 || { tail -30 "$TMP/ds_build.log"; exit 1; }
DS_WHEEL="$(ls "$TMP"/ds/deepspeed-*.whl)"

# The dependencies, resolved for the oldest version; those built for one CPython version are pinned at the versions
# found and fetched for each version below, the others installed once into common/.
first="${PY_VERSIONS%% *}"
"${PIP[@]}" download -q "${BIN[@]}" --python-version "$first" -d "$TMP/common" $DEPS
pinned=()
for w in "$TMP"/common/*.whl; do
  case "$(basename "$w")" in
    *-none-any.whl|*-abi3-*) ;;
    *) pinned+=("$(basename "$w" | cut -d- -f1)==$(basename "$w" | cut -d- -f2)"); rm "$w" ;;
  esac
done

rm -rf "$DEST"
"${PIP[@]}" install -q --no-deps --no-compile --target "$DEST/common" "${BIN[@]}" --python-version "$first" \
  "$TMP"/common/*.whl "$DS_WHEEL"
rm -rf "$DEST/common/bin"  # console scripts, with this machine's interpreter in their first line
for v in $PY_VERSIONS; do
  "${PIP[@]}" download -q --no-deps "${BIN[@]}" --python-version "$v" -d "$TMP/py$v" "${pinned[@]}"
  "${PIP[@]}" install -q --no-deps --no-compile --target "$DEST/py${v/./}" "${BIN[@]}" --python-version "$v" \
    "$TMP/py$v"/*.whl
done
echo "deepspeed $DS_VERSION; per version: ${pinned[*]}"
du -sh "$DEST"/*
du -sh "$DEST"
