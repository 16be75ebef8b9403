#!/usr/bin/env bash
# One call on a GPU machine (device tool): build zerotrain against the machine's torch, run the GPU tests, the
# parity grid on every GPU with NCCL, and zerotrain vs the peers (DDP, torch ZeRO-1, FSDP2) on the same model,
# batch and GPUs; print a table at the end. Needs .deps/ (scripts/fetch_gpu_deps.sh) carried along.
#   device run: carry [".deps"], command "bash bench/gpu/run.sh"
# Environment: ZT_TESTS=0 skips the tests and the parity grid, ZT_BENCH=0 the 1.1B benchmarks, ZT_BENCH_8B=1 adds
# the Llama-3-8B shape (seq 8192, micro-batch 2, activation checkpointing) at stage 3 against FSDP2; ZT_PEERS=0
# skips the peers; ZT_BIG=1 trains an 11.4B Llama shape at stage 3 (too large for one GPU replicated); ZT_STEPS
# (default 10) timed steps per benchmark; ZT_PY=0 skips the Python package (its GPU tests, and the peers' Hugging
# Face model trained under zerotrain at stages 0-3; ZT_PY_STAGES picks stages); ZT_CPP=0 skips the C++ tests, parity grid and
# the C++ model's runs.
# ZT_MICRO=0 skips the micro-benchmarks (bench/micro_bench.cc); ZT_FLOOR=0 the compute floors
# (bench/peers/floor_anchor.py: the HF model's forward + backward on one GPU, no sharding, no optimizer); ZT_DS=0 skips
# DeepSpeed (from .dspkgs/, scripts/fetch_deepspeed.sh; carry [".deps", ".dspkgs"]), ZT_DS_STAGES picks its stages;
# ZT_SCALE=1 trains the 1.1B at 2 GPUs and at all GPUs (issue 8: bench/gpu/scaling.py). For a check that fits a few
# minutes: ZT_UNIT_TESTS picks the C++ unit test binaries, ZT_PARITY_MODELS=0 skips the built-in models' grid,
# ZT_MICRO_LIST the micro-benchmark parts (opt layers comm cpu cpu_world host_peer cpu_adam unit_floor). ZT_DS_8B=1 adds DeepSpeed stage 3 to the 8B.
# ZT_OFFLOAD=1 trains the 1.1B with the optimizer offloaded to the CPU, zerotrain and DeepSpeed, at ZT_OFFLOAD_STAGES (2);
# ZT_OFFLOAD_PARAM=1 offloads the parameters too at stage 3. ZT_OFFLOAD_DEVICES="cpu nvme" also runs both with the
# optimizer on NVMe (swap files in ZT_NVME_PATH, default /tmp/zt_nvme; tag "offload_nvme").
# ZT_COUNT_OPS=N: micro cpu also prints each run's N most called ATen operators and their host time (OPS lines).
# ZT_MEMTRACE=1: allocated/peak GiB at every block of one step, zerotrain stage 3 and FSDP2 (ZT_MEMTRACE_MODES).
# ZT_TRACE=1 traces the 1.1B step of ZT_TRACE_MODES (default zerotrain_stage3 fsdp2) with the PyTorch profiler.
# ZT_PY_WORKERS=0 skips the Python package's GPU workers (the package is still built for the other parts).
# ZT_PEER_LIST picks the 1.1B peers (ddp zero1 fsdp2 fsdp2_noreshard), ZT_CPP_STAGES the C++ model's stages.
# ZT_SAMPLE=US: micro cpu/cpu_world also profile each run's host CPU (bench/host_sampler.h; SAMPLE lines).
# ZT_AUTOTUNE=1: `zerotrain launch --autotuning tune` on the built-in 1.1B (seq 2048, bf16) over ZT_AUTOTUNE_STAGES
# ("1, 2, 3") and micro-batch sizes up to ZT_AUTOTUNE_MAX_MBS (8); its summary lands in run.log.
# ZT_LOGGING=1: DeepSpeed's wall_clock_breakdown, comms_logger and flops_profiler on the built-in 1.1B (stage
# ZT_LOGGING_STAGE, default 3; seq 2048, micro-batch 4, bf16) through `zerotrain train`; their lines land in run.log.
# ZT_QWZ=1: ZeRO++ qwZ (zero_quantized_weights) on the built-in 1.1B at stage 3 (seq 2048, micro-batch 4, bf16),
# with and without, alternating ZT_QWZ_ROUNDS (2) times in one run; ZT_QWZ_MODELS adds models (default llama-1.1b).
# ZT_ZERO_EXTRA='"key": value, ...': more zero_optimization keys for micro cpu/cpu_world (e.g. a larger
# "stage3_prefetch_bucket_size": fewer, larger collectives a step).
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
OUT="${OUT:-/tmp/zt-out}"
mkdir -p "$OUT"
LOG="$OUT/run.log"
: > "$LOG"
summary=()
note() { echo "$*" | tee -a "$LOG"; summary+=("$*"); }

DEPS=/tmp/zt-deps
mkdir -p "$DEPS"
for f in .deps/*.deb; do dpkg -x "$f" "$DEPS"; done
PY=python3
TORCH_PREFIX="$($PY -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')"
NGPU="$($PY -c 'import torch; print(torch.cuda.device_count())')"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee -a "$LOG"
echo "torch $($PY -c 'import torch; print(torch.__version__)'), $NGPU GPUs" | tee -a "$LOG"

t0=$(date +%s)
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$DEPS/usr" \
  -DTORCH_CUDA_ARCH_LIST=9.0 -DCMAKE_CUDA_ARCHITECTURES=90 >"$OUT/cmake.log" 2>&1 || { tail -40 "$OUT/cmake.log"; exit 1; }
TESTS="${ZT_UNIT_TESTS:-batched_copy_test shard_optimizer_test shard_optimizer_kernels_test engine_test flat_layout_test loss_scaler_test lr_schedule_test models_test data_test stage3_test offload_test autotuning_probe_test wall_clock_test comms_logger_test flops_profiler_test}"
PY_TARGET=""
if [ "${ZT_PY:-1}" = 1 ] && grep -q "Python extension ON" "$OUT/cmake.log"; then PY_TARGET=zerotrain_python; fi
cmake --build build-gpu -j "$(nproc)" --target zerotrain_cli parity_worker train_bench attention_bench micro_bench $TESTS $PY_TARGET \
  >"$OUT/build.log" 2>&1 || { grep -E "error|Error" "$OUT/build.log" | head -40; exit 1; }
[ "${ZT_PY:-1}" = 1 ] && [ -z "$PY_TARGET" ] && note "Python extension: not built (no Python headers found by CMake)"
export PYTHONPATH="$ROOT/build-gpu/python${PYTHONPATH:+:$PYTHONPATH}"
note "build: $(( $(date +%s) - t0 )) s"

ZT=build-gpu/zerotrain
DS_PY="py$($PY -c 'import sys;print(f"{sys.version_info[0]}{sys.version_info[1]}")')"  # .dspkgs/ folder for DeepSpeed
if [ "${ZT_TESTS:-1}" = 1 ]; then
if [ "${ZT_CPP:-1}" = 1 ]; then
for t in $TESTS; do
  if [ -x "build-gpu/tests/unit/$t" ]; then
    "build-gpu/tests/unit/$t" >"$OUT/$t.log" 2>&1
    note "$t: $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$OUT/$t.log" | tr '\n' ' ')"
  fi
done

"$ZT" launch --no_local_rank build-gpu/tests/distributed/parity_worker --device cuda >"$OUT/parity.log" 2>&1
grep PARITY "$OUT/parity.log" | tee -a "$LOG"
note "parity ($NGPU GPUs, NCCL): $(grep -E '^[0-9]+ passed, [0-9]+ failed' "$OUT/parity.log" || echo 'no result line')"
# Optimizer offload to the CPU (stages 1-3): master and optimizer state in pinned host memory.
"$ZT" launch --no_local_rank build-gpu/tests/distributed/parity_worker --device cuda --stages 1,2,3 --variants offload,offload_param,offload_nvme,offload_param_nvme \
  >"$OUT/parity_offload.log" 2>&1
grep PARITY "$OUT/parity_offload.log" | grep -v ': ok' | tee -a "$LOG"
note "parity, optimizer offload, stages 1-3 ($NGPU GPUs, NCCL): $(grep -E '^[0-9]+ passed, [0-9]+ failed' "$OUT/parity_offload.log" || echo 'no result line')"
if [ "${ZT_PARITY_MODELS:-1}" = 1 ]; then
"$ZT" launch --no_local_rank build-gpu/tests/distributed/parity_worker --device cuda --models llama,gpt2,shared \
  --variants default,checkpoint,no_prefetch,joined --precisions fp32,bf16 >"$OUT/parity_models.log" 2>&1
grep PARITY "$OUT/parity_models.log" | grep -v ': ok' | tee -a "$LOG"
note "parity, built-in models, stages 0-3 ($NGPU GPUs, NCCL): $(grep -E '^[0-9]+ passed, [0-9]+ failed' "$OUT/parity_models.log" || echo 'no result line')"
fi
fi
if [ -n "$PY_TARGET" ] && [ "${ZT_PY_WORKERS:-1}" = 1 ]; then
  # The Python package on NCCL: a Python module and tiny HF models at stages 0-3 against unsharded training.
  for args in "parity_worker.py --stages 0,1,2,3" "hf_worker.py --model llama --stage 3" \
              "hf_worker.py --model llama --stage 3 --checkpointing non_reentrant" "hf_worker.py --model gpt2 --stage 2" \
              "hf_worker.py --model llama --stage 3 --dtype bf16" "trainer_worker.py --stage 3 --bf16" \
              "groups_worker.py --kind adamw --stage 3" "scheduler_worker.py --kind object --stage 2" \
              "logging_worker.py" "qwz_worker.py"; do
    name="py_$(echo "$args" | tr -c 'a-z0-9' '_')"
    ZEROTRAIN_PYTHON=$PY "$ZT" launch tests/python/workers/$args >"$OUT/$name.log" 2>&1
    rc=$?
    note "python $args: rc $rc, $(grep -o 'PASS ' "$OUT/$name.log" | wc -l) PASS, $(grep -o 'FAIL ' "$OUT/$name.log" | wc -l) FAIL"
    grep -E 'FAIL |Error' "$OUT/$name.log" | head -3 | cut -c1-300 | tee -a "$LOG"
  done
fi
fi

if [ "${ZT_MICRO:-1}" = 1 ]; then
  # Issue 7's micro-benchmarks: the optimizer step against a device copy, collectives against raw NCCL, the engine's
  # host CPU time per step on a model of 512 small tensors.
  # ZT_MICRO_LIST picks parts (default all: opt layers comm cpu cpu_world host_peer cpu_adam).
  MICRO="${ZT_MICRO_LIST:-opt layers comm cpu cpu_world host_peer cpu_adam unit_floor}"
  for m in $MICRO; do
    case $m in
      # unit_floor: the host cost per unit of stage 3's mechanism alone (allocation, autograd node, hook).
      opt|layers|unit_floor) build-gpu/bench/micro_bench $m >"$OUT/micro_$m.log" 2>&1 ;;
      comm) "$ZT" launch --no_local_rank build-gpu/bench/micro_bench comm >"$OUT/micro_comm.log" 2>&1 ;;
      # ZT_SAMPLE=US: each run also under the host sampler (bench/host_sampler.h), a sample every US us of CPU.
      # ZT_CPU_STAGES / ZT_CPU_WORLD_STAGES: engine_cpu's --stages for cpu / cpu_world (digits 0-3, a, b; h / i:
      # stages 3 / 2 with the step reading the gradient norm on the host, bf16.check_grad_overflow).
      cpu) build-gpu/bench/micro_bench engine_cpu --stages "${ZT_CPU_STAGES:-0123a}" \
             ${ZT_COUNT_OPS:+--count-ops $ZT_COUNT_OPS} ${ZT_SAMPLE:+--sample $ZT_SAMPLE} \
             ${ZT_ZERO_EXTRA:+--zero-extra "$ZT_ZERO_EXTRA"} \
             >"$OUT/micro_cpu.log" 2>&1 ;;
      # The same on every GPU (nccl): stage 3's collectives per unit cost host time that a single rank does not show.
      cpu_world) "$ZT" launch --no_local_rank build-gpu/bench/micro_bench engine_cpu --comm env --stages "${ZT_CPU_WORLD_STAGES:-23a}" ${ZT_SAMPLE:+--sample $ZT_SAMPLE} \
                   ${ZT_ZERO_EXTRA:+--zero-extra "$ZT_ZERO_EXTRA"} \
                   >"$OUT/micro_cpu_world.log" 2>&1 ;;
      # FSDP2's and DDP's host CPU time on the same stress model, every GPU (bench/peers/host_anchor.py): the peers
      # of cpu_world's engine_cpu_ms.
      # The host's Adam pass (optimizer offload) against a pass moving its bytes, with a rank's share of the cores.
      cpu_adam) OMP_NUM_THREADS=$(( $(nproc) / NGPU )) build-gpu/bench/micro_bench cpu_adam >"$OUT/micro_cpu_adam.log" 2>&1 ;;
      host_peer) timeout 300 $PY -m torch.distributed.run --standalone --nproc_per_node "$NGPU" bench/peers/host_anchor.py \
                   >"$OUT/micro_host_peer.log" 2>&1 ;;
      *) note "ZT_MICRO_LIST: unknown part $m (allowed: opt layers comm cpu cpu_world host_peer cpu_adam unit_floor)" ;;
    esac
  done
  for f in $(for m in $MICRO; do echo micro_$m; done); do
    [ -f "$OUT/$f.log" ] || continue
    grep RESULT "$OUT/$f.log" | tee -a "$LOG"
    summary+=("$(grep RESULT "$OUT/$f.log")")
    grep -q RESULT "$OUT/$f.log" || note "$f: failed: $(tail -3 "$OUT/$f.log")"
  done
fi

if [ "${ZT_BENCH:-1}" = 1 ]; then
  STEPS="${ZT_STEPS:-10}"
  if [ "${ZT_FLOOR:-1}" = 1 ]; then
    $PY bench/peers/floor_anchor.py --layers 22 --hidden 2048 --heads 32 --kv_heads 4 --ffn 5632 --vocab 32000 \
      --seq 2048 --mb 4 --depths 11,22 --profile 12 >"$OUT/floor.log" 2>&1
    note "$(grep RESULT "$OUT/floor.log" || echo "floor: failed: $(tail -2 "$OUT/floor.log")")"
    grep PROFILE "$OUT/floor.log" | tee -a "$LOG"
  fi
  SHAPE="--layers 22 --hidden 2048 --heads 32 --kv_heads 4 --ffn 5632 --vocab 32000 --seq 2048 --mb 4"
  PEERS="${ZT_PEER_LIST:-ddp zero1 fsdp2 fsdp2_noreshard}"
  [ "${ZT_PEERS:-1}" = 1 ] || PEERS=""
  for mode in $PEERS; do
    $PY -m torch.distributed.run --standalone --nproc_per_node "$NGPU" bench/peers/train_anchor.py --mode $mode $SHAPE \
      --steps "$STEPS" >"$OUT/peer_$mode.log" 2>&1
    note "$(grep RESULT "$OUT/peer_$mode.log" || echo "peer $mode: failed: $(tail -2 "$OUT/peer_$mode.log")")"
  done
  for stage in $([ "${ZT_CPP:-1}" = 1 ] && echo ${ZT_CPP_STAGES:-0 1 2 3}); do
    "$ZT" launch --no_local_rank build-gpu/bench/train_bench --model llama-1.1b --stage $stage --seq 2048 --mb 4 \
      --steps "$STEPS" >"$OUT/zt_stage$stage.log" 2>&1
    note "$(grep RESULT "$OUT/zt_stage$stage.log" || echo "zerotrain stage $stage: failed: $(tail -3 "$OUT/zt_stage$stage.log")")"
  done
  if [ -n "$PY_TARGET" ]; then
    for stage in ${ZT_PY_STAGES:-0 1 2 3}; do
      $PY -m torch.distributed.run --standalone --nproc_per_node "$NGPU" bench/peers/train_anchor.py \
        --mode zerotrain_stage$stage $SHAPE --steps "$STEPS" >"$OUT/py_stage$stage.log" 2>&1
      note "$(grep RESULT "$OUT/py_stage$stage.log" || echo "zerotrain python stage $stage: failed: $(tail -3 "$OUT/py_stage$stage.log")")"
    done
    # Stage 3 with FSDP2's memory policy (reshard after forward = stage3_max_reuse_distance 0; DeepSpeed's default
    # 1e9 keeps the last layers gathered from forward into backward): the like-for-like memory comparison.
    if [[ " ${ZT_PY_STAGES:-0 1 2 3} " == *" 3 "* ]]; then
      $PY -m torch.distributed.run --standalone --nproc_per_node "$NGPU" bench/peers/train_anchor.py \
        --mode zerotrain_stage3 $SHAPE --zero_extra '{"stage3_max_reuse_distance": 0}' --tag reshard \
        --steps "$STEPS" >"$OUT/py_stage3_reshard.log" 2>&1
      note "$(grep RESULT "$OUT/py_stage3_reshard.log" || echo "zerotrain python stage 3 reshard: failed: $(tail -3 "$OUT/py_stage3_reshard.log")")"
    fi
  fi
  # DeepSpeed from PyPI on the same HF model (scripts/fetch_deepspeed.sh; carry .dspkgs): train_anchor.py puts
  # .dspkgs/pyXY and .dspkgs/common on sys.path itself. ZT_DS=0 skips it, ZT_DS_STAGES picks stages.
  if [ "${ZT_DS:-1}" = 1 ] && [ -d ".dspkgs/$DS_PY" ]; then
    for stage in ${ZT_DS_STAGES:-0 1 2 3}; do
      $PY -m torch.distributed.run --standalone --nproc_per_node "$NGPU" bench/peers/train_anchor.py \
        --mode deepspeed_stage$stage $SHAPE --steps "$STEPS" >"$OUT/ds_stage$stage.log" 2>&1
      note "$(grep RESULT "$OUT/ds_stage$stage.log" || echo "deepspeed stage $stage: failed: $(tail -3 "$OUT/ds_stage$stage.log")")"
    done
  elif [ "${ZT_DS:-1}" = 1 ]; then
    note "deepspeed: skipped (no .dspkgs/$DS_PY; run scripts/fetch_deepspeed.sh and carry .dspkgs)"
  fi
fi

if [ "${ZT_OFFLOAD:-0}" = 1 ]; then
  # Optimizer offload to the CPU (ZeRO-Offload; ZT_OFFLOAD_STAGES, default 2), zerotrain's Python package against DeepSpeed's own
  # (DeepSpeedCPUAdam, carry .dspkgs), same HF 1.1B model; ratios.py pairs the "_offload" runs.
  STEPS="${ZT_STEPS:-10}"
  SHAPE="--layers 22 --hidden 2048 --heads 32 --kv_heads 4 --ffn 5632 --vocab 32000 --seq 2048 --mb 4"
  OFFLOAD='{"offload_optimizer": {"device": "cpu", "pin_memory": true}}'
  # The host step's threads: the cores shared among the ranks, for both (what `zerotrain launch` sets and
  # DeepSpeed's launcher with --bind_cores_to_rank; torchrun alone would give each rank one thread).
  OMP_RANK="${OMP_NUM_THREADS:-$(( $(nproc) / NGPU ))}"
  # ZT_OFFLOAD_PARAM=1: stage 3 also offloads the parameters (ZeRO-Infinity on the CPU), tag "offload_param".
  OFFLOAD_PARAM='{"offload_optimizer": {"device": "cpu", "pin_memory": true}, "offload_param": {"device": "cpu", "pin_memory": true}}'
  NVME="${ZT_NVME_PATH:-/tmp/zt_nvme}"
  for dev in ${ZT_OFFLOAD_DEVICES:-cpu}; do
  [ "$dev" = nvme ] && mkdir -p "$NVME"
  for mode in $(for st in ${ZT_OFFLOAD_STAGES:-2}; do echo zerotrain_stage$st; [ -d ".dspkgs/$DS_PY" ] && echo deepspeed_stage$st; done); do
    extra="$OFFLOAD"; tag=offload
    if [ "${ZT_OFFLOAD_PARAM:-0}" = 1 ] && [ "${mode: -1}" = 3 ]; then extra="$OFFLOAD_PARAM"; tag=offload_param; fi
    if [ "$dev" = nvme ]; then
      extra="${extra/\"offload_optimizer\": {\"device\": \"cpu\"/\"offload_optimizer\": {\"device\": \"nvme\", \"nvme_path\": \"$NVME\"}"
      tag="${tag}_nvme"
    fi
    OMP_NUM_THREADS=$OMP_RANK timeout "${ZT_OFFLOAD_TIMEOUT:-240}" $PY -m torch.distributed.run --standalone --nproc_per_node "$NGPU" bench/peers/train_anchor.py --mode $mode $SHAPE \
      --zero_extra "$extra" --tag $tag --steps "$STEPS" >"$OUT/${tag}_$mode.log" 2>&1
    note "$(grep RESULT "$OUT/${tag}_$mode.log" || echo "$tag $mode: failed: $(tail -3 "$OUT/${tag}_$mode.log")")"
  done
  done
fi

if [ "${ZT_TRACE:-0}" = 1 ]; then
  # Where the 1.1B step's GPU time goes (issue 7): PyTorch profiler traces of ZT_TRACE_MODES (3 steps each, every
  # rank), bench/gpu/trace_step.py splits each step into compute, NCCL (overlapped / exposed) and idle.
  SHAPE="--layers 22 --hidden 2048 --heads 32 --kv_heads 4 --ffn 5632 --vocab 32000 --seq 2048 --mb 4"
  for mode in ${ZT_TRACE_MODES:-zerotrain_stage3 fsdp2}; do
    rm -f /tmp/zt_trace_${mode}_rank*.json
    ANCHOR_TRACE=/tmp/zt_trace_$mode timeout 300 $PY -m torch.distributed.run --standalone --nproc_per_node "$NGPU" \
      bench/peers/train_anchor.py --mode $mode $SHAPE --warmup 3 --steps 3 >"$OUT/trace_$mode.log" 2>&1
    note "$(grep RESULT "$OUT/trace_$mode.log" | sed 's/RESULT /RESULT trace /' || echo "trace $mode: failed: $(tail -3 "$OUT/trace_$mode.log")")"
    $PY bench/gpu/trace_step.py /tmp/zt_trace_${mode}_rank*.json --label "$mode" >"$OUT/trace_step_$mode.log" 2>&1
    cat "$OUT/trace_step_$mode.log" | tee -a "$LOG"
    summary+=("$(cat "$OUT/trace_step_$mode.log")")
  done
fi

if [ "${ZT_MEMTRACE:-0}" = 1 ]; then
  # Where stage 3's peak memory parts from FSDP2's (issue 7): allocated and peak GiB at every block's forward and
  # backward entry on one warmup step (ANCHOR_MEMTRACE=1), then the timed steps; ZT_MEMTRACE_EXTRA is merged into
  # zerotrain's zero_optimization (default: stage3_max_reuse_distance 0, FSDP2's reshard after forward).
  SHAPE="--layers 22 --hidden 2048 --heads 32 --kv_heads 4 --ffn 5632 --vocab 32000 --seq 2048 --mb 4"
  for mode in ${ZT_MEMTRACE_MODES:-zerotrain_stage3 fsdp2}; do
    extra=(); case $mode in zerotrain*) extra=(--zero_extra "${ZT_MEMTRACE_EXTRA:-{\"stage3_max_reuse_distance\": 0\}}" --tag memtrace) ;; esac
    ANCHOR_MEMTRACE=1 $PY -m torch.distributed.run --standalone --nproc_per_node "$NGPU" bench/peers/train_anchor.py \
      --mode $mode $SHAPE "${extra[@]}" --warmup 3 --steps "${ZT_STEPS:-10}" >"$OUT/memtrace_$mode.log" 2>&1
    note "$(grep RESULT "$OUT/memtrace_$mode.log" || echo "memtrace $mode: failed: $(tail -3 "$OUT/memtrace_$mode.log")")"
    grep "MEMTRACE peak" "$OUT/memtrace_$mode.log" | sed "s/^/$mode /" | tee -a "$LOG"
  done
fi

if [ "${ZT_SCALE:-0}" = 1 ]; then
  # Issue 8: the 1.1B at 2 GPUs and at every GPU of this machine, same run: scaling efficiency and model state per GPU
  # (bench/gpu/scaling.py prints the table).
  STEPS="${ZT_STEPS:-10}"
  SHAPE="--layers 22 --hidden 2048 --heads 32 --kv_heads 4 --ffn 5632 --vocab 32000 --seq 2048 --mb 4"
  for world in $(printf '%s\n' 2 "$NGPU" | sort -nu); do
    for mode in ${ZT_SCALE_MODES:-fsdp2 zerotrain_stage1 zerotrain_stage2 zerotrain_stage3}; do
      $PY -m torch.distributed.run --standalone --nproc_per_node "$world" bench/peers/train_anchor.py --mode $mode \
        $SHAPE --steps "$STEPS" >"$OUT/scale_${mode}_w$world.log" 2>&1
      note "$(grep RESULT "$OUT/scale_${mode}_w$world.log" | sed "s/RESULT /RESULT w$world /" || echo "scale $mode world $world: failed: $(tail -2 "$OUT/scale_${mode}_w$world.log")")"
    done
  done
fi

if [ "${ZT_BENCH_8B:-0}" = 1 ]; then
  STEPS="${ZT_STEPS:-10}"
  SHAPE8="--layers 32 --hidden 4096 --heads 32 --kv_heads 8 --ffn 14336 --vocab 128256 --seq 8192 --mb 2 --ckpt"
  if [ "${ZT_PEERS:-1}" = 1 ]; then
    for attn in ${ZT_ATTN_LIST:-default}; do
      [ "$attn" = fa3 ] && continue  # the HF peer has no FA3 switch
      $PY -m torch.distributed.run --standalone --nproc_per_node "$NGPU" bench/peers/train_anchor.py --mode fsdp2 \
        $SHAPE8 --sdpa "$attn" --steps "$STEPS" >"$OUT/peer_fsdp2_8b_$attn.log" 2>&1
      note "$(grep RESULT "$OUT/peer_fsdp2_8b_$attn.log" | sed 's/RESULT /RESULT 8b /' || echo "peer fsdp2 8b ($attn): failed: $(tail -2 "$OUT/peer_fsdp2_8b_$attn.log")")"
    done
  fi
  if [ "${ZT_FLOOR:-1}" = 1 ]; then
    $PY bench/peers/floor_anchor.py $SHAPE8 --depths 2,4 --steps 4 --profile 12 >"$OUT/floor_8b.log" 2>&1
    note "$(grep RESULT "$OUT/floor_8b.log" | sed 's/RESULT /RESULT 8b /' || echo "floor 8b: failed: $(tail -2 "$OUT/floor_8b.log")")"
    grep PROFILE "$OUT/floor_8b.log" | tee -a "$LOG"
  fi
  # ZT_DS_8B=1: DeepSpeed's stage 3 on the 8B shape as well (carry .dspkgs).
  if [ "${ZT_DS_8B:-0}" = 1 ] && [ -d ".dspkgs/$DS_PY" ]; then
    $PY -m torch.distributed.run --standalone --nproc_per_node "$NGPU" bench/peers/train_anchor.py \
      --mode deepspeed_stage3 $SHAPE8 --steps "$STEPS" >"$OUT/ds_8b_stage3.log" 2>&1
    note "$(grep RESULT "$OUT/ds_8b_stage3.log" | sed 's/RESULT /RESULT 8b /' || echo "deepspeed 8b stage 3: failed: $(tail -3 "$OUT/ds_8b_stage3.log")")"
  fi
  build-gpu/bench/attention_bench >"$OUT/attention.log" 2>&1
  grep ATTN "$OUT/attention.log" | tee -a "$LOG"
  if [ -n "$PY_TARGET" ]; then
    $PY -m torch.distributed.run --standalone --nproc_per_node "$NGPU" bench/peers/train_anchor.py \
      --mode zerotrain_stage3 $SHAPE8 --steps "$STEPS" >"$OUT/py_8b_stage3.log" 2>&1
    note "$(grep RESULT "$OUT/py_8b_stage3.log" | sed 's/RESULT /RESULT 8b /' || echo "zerotrain python 8b stage 3: failed: $(tail -3 "$OUT/py_8b_stage3.log")")"
  fi
  # ZT_ATTN_LIST: SDPA backends to train with (default, cudnn, fa3); the model is built deferred (on the GPUs).
  for attn in $([ "${ZT_CPP:-1}" = 1 ] && echo ${ZT_ATTN_LIST:-default}); do
    "$ZT" launch --no_local_rank build-gpu/bench/train_bench --model llama-3-8b --stage 3 --seq 8192 --mb 2 --ckpt 1 \
      --deferred 1 --attention "$attn" --steps "$STEPS" >"$OUT/zt_8b_stage3_$attn.log" 2>&1
    note "$(grep RESULT "$OUT/zt_8b_stage3_$attn.log" | sed 's/RESULT /RESULT 8b /' || echo "zerotrain 8b stage 3 ($attn): failed: $(tail -3 "$OUT/zt_8b_stage3_$attn.log")")"
  done
fi

if [ "${ZT_BIG:-0}" = 1 ]; then
  # A model whose replicated training state (16 bytes per parameter, ~182 GB) does not fit one GPU, at stage 3.
  BIG="--model llama-2-7b --layers 40 --hidden 5120 --heads 40 --kv-heads 8 --ffn 13824 --vocab 32000"
  "$ZT" launch --no_local_rank build-gpu/bench/train_bench $BIG --stage 3 --seq 2048 --mb 1 --ckpt 1 --steps 4 \
    --warmup 2 >"$OUT/zt_big_stage3.log" 2>&1
  note "$(grep RESULT "$OUT/zt_big_stage3.log" | sed 's/RESULT /RESULT big /' || echo "zerotrain big stage 3: failed: $(tail -3 "$OUT/zt_big_stage3.log")")"
fi

if [ "${ZT_AUTOTUNE:-0}" = 1 ]; then
  # DeepSpeed's autotuner through zerotrain's launcher (docs/autotuning.md): each experiment is `zerotrain train` on all
  # GPUs; the ranking metric is throughput (samples/s of 2048 tokens).
  AT_DIR="$OUT/autotune"
  mkdir -p "$AT_DIR"
  cat >"$AT_DIR/ds.json" <<EOF
{"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1, "bf16": {"enabled": true}, "gradient_clipping": 1.0,
 "optimizer": {"type": "AdamW", "params": {"lr": 3e-4, "betas": [0.9, 0.95], "weight_decay": 0.1}},
 "zero_optimization": {"stage": [${ZT_AUTOTUNE_STAGES:-1, 2, 3}]},
 "autotuning": {"enabled": true, "start_profile_step": 3, "end_profile_step": 6,
                "max_train_micro_batch_size_per_gpu": ${ZT_AUTOTUNE_MAX_MBS:-8}, "num_tuning_micro_batch_sizes": 2}}
EOF
  t_at=$(date +%s)
  (cd "$AT_DIR" && timeout "${ZT_AUTOTUNE_TIMEOUT:-420}" "$ROOT/$ZT" launch --autotuning tune --no_local_rank \
    "$ROOT/$ZT" train --config ds.json --model llama-1.1b --seq 2048 --steps 100 --device cuda) >"$OUT/autotune.log" 2>&1
  rc=$?
  note "autotune: rc $rc in $(( $(date +%s) - t_at )) s: $(grep 'optimal setup' "$OUT/autotune.log" || tail -3 "$OUT/autotune.log")"
  if [ -f "$AT_DIR/autotuning_results/summary.txt" ]; then
    tee -a "$LOG" <"$AT_DIR/autotuning_results/summary.txt"
    for d in "$AT_DIR"/autotuning_results/*/; do
      [ -f "$d/stderr.log" ] && cp "$d/stderr.log" "$OUT/autotune_$(basename "$d")_stderr.log"
    done
  fi
fi

if [ "${ZT_QWZ:-0}" = 1 ]; then
  # Same model, batch and GPUs; only the all-gathers' payload differs (int8 blocks + scales vs bf16).
  for round in $(seq "${ZT_QWZ_ROUNDS:-2}"); do
    for model in ${ZT_QWZ_MODELS:-llama-1.1b}; do
      for q in false true; do
        tag=$([ $q = true ] && echo qwz || echo plain)
        "$ZT" launch --no_local_rank build-gpu/bench/train_bench --model $model --stage 3 --seq 2048 --mb 4 \
          --steps "${ZT_STEPS:-10}" --zero-extra "\"zero_quantized_weights\": $q" --tag "${tag}_r$round" \
          >"$OUT/qwz_${model}_${tag}_$round.log" 2>&1
        note "$(grep RESULT "$OUT/qwz_${model}_${tag}_$round.log" || echo "qwz $model $tag: failed: $(tail -3 "$OUT/qwz_${model}_${tag}_$round.log")")"
      done
    done
  done
fi

if [ "${ZT_LOGGING:-0}" = 1 ]; then
  # The engine's own reports on a real model: timers (DeepSpeed's lines), the collectives' summary (blocking while
  # logged: compare its busbw with micro comm's raw NCCL), the flops profile of step 3.
  cat >"$OUT/logging.json" <<EOF
{"train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 1, "bf16": {"enabled": true}, "gradient_clipping": 1.0,
 "optimizer": {"type": "AdamW", "params": {"lr": 3e-4, "betas": [0.9, 0.95], "weight_decay": 0.1}},
 "zero_optimization": {"stage": ${ZT_LOGGING_STAGE:-3}}, "wall_clock_breakdown": true, "comms_logger": {"enabled": true},
 "flops_profiler": {"enabled": true, "profile_step": 3, "detailed": false, "top_modules": 3}}
EOF
  timeout 300 "$ZT" launch --no_local_rank "$ZT" train --config "$OUT/logging.json" --model llama-1.1b --seq 2048 \
    --steps 6 --device cuda >"$OUT/logging.log" 2>&1
  note "logging (stage ${ZT_LOGGING_STAGE:-3}): rc $?, $(grep -c 'fwd_microstep' "$OUT/logging.log") timer lines"
  grep -E "^\[Rank 0\] time \(ms\) \| fwd: " "$OUT/logging.log" | tail -2 | tee -a "$LOG"
  grep -E "fwd MACs per GPU|latency: |FLOPS per GPU|samples/second" "$OUT/logging.log" | tee -a "$LOG"
  sed -n '/^Comm. Op/,/^done:/p' "$OUT/logging.log" | tee -a "$LOG"
fi

echo
echo "================================ summary ================================"
printf '%s\n' "${summary[@]}"
printf '%s\n' "${summary[@]}" | $PY bench/gpu/ratios.py
if [ "${ZT_SCALE:-0}" = 1 ]; then printf '%s\n' "${summary[@]}" | $PY bench/gpu/scaling.py; fi
