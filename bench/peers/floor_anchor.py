"""The compute floor of a training step: the peers' Hugging Face Llama, forward and backward only, on one GPU, with no
sharding, no communication and no optimizer (bf16 parameters and activations, as every sharded run computes).

A sharded run cannot be faster than its model's forward + backward plus the optimizer's pass over the local shard,
so this bounds every ratio between two runs of the same model: if a peer is within x% of the floor, no engine can
beat it by more than x%. The full model may not fit on one GPU, so the script times the model at two depths and
extrapolates linearly: step(L) = fixed + L * per_layer (embedding, final norm, head and loss are `fixed`).

Run: python3 floor_anchor.py --layers 32 --hidden 4096 ... --seq 8192 --mb 2 --ckpt --depths 2,4
Prints one RESULT line.
"""
import argparse, json, time
import torch

from llama_shape import add_shape_args, make_llama

p = argparse.ArgumentParser()
add_shape_args(p, steps=8, warmup=3)  # --layers: the depth to extrapolate to
p.add_argument("--depths", default="2,4", help="two depths to time")
p.add_argument("--profile", type=int, default=0, help="print the N kernels with the most GPU time in one step at the "
               "second depth, grouped (GEMM, attention, elementwise, ...), as shares of the step's kernel time")
a = p.parse_args()

dev = torch.device("cuda", 0)


def time_depth(layers):
    torch.manual_seed(0)
    model = make_llama(a, dev, layers).to(torch.bfloat16)
    model.train()
    times = []
    for s in range(a.warmup + a.steps):
        x = torch.randint(0, a.vocab, (a.mb, a.seq + 1), device=dev)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = model(input_ids=x[:, :-1], labels=x[:, 1:])
        out.loss.backward()
        for q in model.parameters():
            q.grad = None
        torch.cuda.synchronize()
        if s >= a.warmup:
            times.append(time.perf_counter() - t0)
    if a.profile and layers == int(a.depths.split(",")[1]):
        profile_step(model)
    del model
    torch.cuda.empty_cache()
    times.sort()
    return times[len(times) // 2]


def kernel_group(name):
    n = name.lower()
    if "flash" in n or "fmha" in n or "attention" in n:
        return "attention"
    if "gemm" in n or "nvjet" in n or "cutlass" in n or "sm90_xmma" in n or "cublas" in n:
        return "gemm"
    if "nccl" in n:
        return "nccl"
    if "reduce" in n or "norm" in n or "softmax" in n or "cross_entropy" in n or "nll" in n:
        return "reduction"
    if "copy" in n or "memcpy" in n or "memset" in n or "fill" in n:
        return "copy/fill"
    return "elementwise"


def profile_step(model):
    from torch.profiler import profile, ProfilerActivity
    x = torch.randint(0, a.vocab, (a.mb, a.seq + 1), device=dev)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        model(input_ids=x[:, :-1], labels=x[:, 1:]).loss.backward()
        torch.cuda.synchronize()
    for q in model.parameters():
        q.grad = None
    rows = [(e.key, e.device_time_total, e.count) for e in prof.key_averages() if e.device_time_total > 0]
    total = sum(t for _name, t, _count in rows) or 1.0
    groups = {}
    for name, t, _ in rows:
        groups[kernel_group(name)] = groups.get(kernel_group(name), 0) + t
    print("PROFILE " + json.dumps(dict(depth=int(a.depths.split(",")[1]), kernel_ms=round(total / 1e3, 2),
                                       share={k: round(v / total, 3) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])})))
    for name, t, count in sorted(rows, key=lambda r: -r[1])[:a.profile]:
        print(f"PROFILE {t / total:6.1%} {t / 1e3:9.2f} ms {count:5d}x  {name[:110]}")


d1, d2 = (int(d) for d in a.depths.split(","))
t1, t2 = time_depth(d1), time_depth(d2)
per_layer = (t2 - t1) / (d2 - d1)
fixed = t1 - d1 * per_layer
step = fixed + a.layers * per_layer
tokens = a.mb * a.seq
print("RESULT " + json.dumps(dict(mode="floor_fwd_bwd", layers=a.layers, seq=a.seq, mb=a.mb, ckpt=a.ckpt,
                                  depths=[d1, d2], depth_s=[round(t1, 4), round(t2, 4)],
                                  per_layer_ms=round(per_layer * 1e3, 2), fixed_ms=round(fixed * 1e3, 2),
                                  step_s=round(step, 4), tok_s_per_gpu=round(tokens / step))), flush=True)
