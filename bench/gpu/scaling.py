"""Reads the RESULT lines of `ZT_SCALE=1 bash bench/gpu/run.sh` (the 1.1B trained at 2 GPUs and at every GPU of the
machine, in one run) and prints, per mode, tokens/s per GPU at each world size, the scaling efficiency (tokens/s per
GPU at the largest world / at 2 GPUs; issue 8 asks >= 0.95 at 8 GPUs for stages 1-3) and the model state held per
GPU between steps against what the layout predicts (psi = parameters, N = GPUs):

  zerotrain stage 1: 2 psi (bf16 parameters) + 4 psi (fp32 gradient accumulator) + 12 psi / N (fp32 master + Adam)
  zerotrain stage 2: 2 psi + 12 psi / N    (the fp32 gradient shard is freed between steps, allocated in backward)
  zerotrain stage 3: 12 psi / N            (no 16-bit copy: units gather from the fp32 master)
  FSDP2:             12 psi / N            (fp32 sharded parameters + Adam; gradients set to None)
"""
import json
import sys

EXPECTED = {"zerotrain_py_stage1": lambda p, n: 6 * p + 12 * p / n, "zerotrain_py_stage2": lambda p, n: 2 * p + 12 * p / n,
            "zerotrain_py_stage3": lambda p, n: 12 * p / n, "fsdp2": lambda p, n: 12 * p / n}

runs = {}  # mode -> world -> result
for line in sys.stdin:
    if "RESULT " not in line:
        continue
    rest = line.split("RESULT ", 1)[1]
    tag = rest[:rest.index("{")].strip()
    if not tag.startswith("w"):
        continue
    r = json.loads(rest[rest.index("{"):])
    runs.setdefault(r["mode"], {})[r["world"]] = r

print(f"{'mode':<22} {'world':>5} {'tok/s/GPU':>10} {'efficiency':>10} {'state GiB':>10} {'expected':>9} {'peak GiB':>9}")
for mode, by_world in runs.items():
    worlds = sorted(by_world)
    base = by_world[worlds[0]]["tok_s_per_gpu"]
    for w in worlds:
        r = by_world[w]
        psi = r["params_M"] * 1e6
        exp = EXPECTED.get(mode)
        exp_s = f"{exp(psi, w) / 2**30:9.2f}" if exp else f"{'':>9}"
        print(f"{mode:<22} {w:>5} {r['tok_s_per_gpu']:>10} {r['tok_s_per_gpu'] / base:>10.3f} "
              f"{r.get('state_GiB_max_rank', float('nan')):>10} {exp_s} {r['peak_mem_GiB_max_rank']:>9}")
