"""Reads the RESULT lines of bench/gpu/run.sh on stdin and prints each zerotrain result as a ratio to its peers
measured in the same run: stage 0 / DDP, stage 1 / torch ZeRO-1, stage 2 / FSDP2 without resharding, stage 3 /
FSDP2 (and the 8B shape at stage 3 / FSDP2 on the same shape), and stage N / DeepSpeed stage N where DeepSpeed ran.
zerotrain_stage* is the C++ model (bench/train_bench.cc), zerotrain_py_stage* the Python package on the peers'
Hugging Face model. Where a compute floor was measured (bench/peers/floor_anchor.py), every run of that shape is also
shown as a fraction of it. Micro-benchmark lines (bench/micro_bench.cc) are summarised last."""
import json
import re
import sys

PEER = {"zerotrain_stage0": "ddp", "zerotrain_stage1": "zero1", "zerotrain_stage2": "fsdp2_noreshard",
        "zerotrain_stage3": "fsdp2", "zerotrain_stage3_cudnn": "fsdp2_cudnn", "zerotrain_stage3_fa3": "fsdp2",
        # the Python package on the peers' own Hugging Face model (bench/peers/train_anchor.py --mode zerotrain_*)
        "zerotrain_py_stage0": "ddp", "zerotrain_py_stage1": "zero1", "zerotrain_py_stage2": "fsdp2_noreshard",
        "zerotrain_py_stage3": "fsdp2"}

results, micro = {}, []
for line in sys.stdin:
    if "RESULT " not in line:
        continue
    rest = line.split("RESULT ", 1)[1]
    tag = rest[:rest.index("{")].strip()  # "8b", "big" or nothing
    r = json.loads(rest[rest.index("{"):])
    if "mode" not in r:
        micro.append(r)
        continue
    results[(tag + " " if tag else "") + r["mode"]] = r


def split(key):
    return (key.split(" ", 1)[0] + " ", key.split(" ", 1)[1]) if " " in key else ("", key)


print(f"{'zerotrain':<24} {'tok/s/GPU':>10} {'peer':<22} {'tok/s/GPU':>10} {'speed':>7} {'mem GiB':>8} {'peer GiB':>8}")
for key, r in results.items():
    tag, mode = split(key)
    base = mode if mode in PEER else (re.match(r"zerotrain(?:_py)?_stage\d", mode) or [None])[0]
    if base not in PEER:
        continue
    variant = mode[len(base):]  # e.g. "_offload" (train_anchor.py --tag): DeepSpeed's run of the same variant
    peers = [PEER[base], "deepspeed_stage" + base[-1] + variant]  # DeepSpeed where it ran on that shape
    mem = r.get("peak_mem_GiB_max_rank", float("nan"))
    shown = False
    for name in peers:
        peer = results.get(tag + name)
        if peer is None:
            continue
        shown = True
        print(f"{key:<24} {r['tok_s_per_gpu']:>10} {tag + peer['mode']:<22} {peer['tok_s_per_gpu']:>10} "
              f"{r['tok_s_per_gpu'] / peer['tok_s_per_gpu']:>6.2f}x {mem:>8} {peer['peak_mem_GiB_max_rank']:>8}")
    if not shown:
        print(f"{key:<24} {r['tok_s_per_gpu']:>10} {'(no peer)':<22}")

for key, floor in results.items():
    tag, mode = split(key)
    if mode != "floor_fwd_bwd":
        continue
    print(f"\n{tag}compute floor (forward + backward, one GPU, no sharding or optimizer): {floor['tok_s_per_gpu']} tok/s")
    for other, r in results.items():
        otag, omode = split(other)
        if otag == tag and omode != mode:
            print(f"  {other:<24} {r['tok_s_per_gpu']:>10} = {r['tok_s_per_gpu'] / floor['tok_s_per_gpu']:.3f} of the floor")

if micro:
    print("\nmicro-benchmarks")
    for r in micro:
        print("  " + ", ".join(f"{k}={v}" for k, v in r.items()))
