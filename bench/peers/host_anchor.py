"""Host CPU time per step of FSDP2 (and DDP) on the stress model of bench/micro_bench.cc engine_cpu: `blocks` residual
blocks x + relu(W x + b) of width `width` (2 tensors each: 512 small tensors at the defaults), bf16 compute, one unit
(fully_shard) per block. The peer of micro_bench's engine_cpu_ms: the process CPU time of a step (every thread: NCCL's
proxy included, waiting for the GPU excluded: the step ends on a blocking-sync event) minus that of the same model
trained without sharding (bf16 parameters, one fused AdamW) in the same process.

  torchrun --nproc_per_node N bench/peers/host_anchor.py [--modes fsdp2,ddp] [--blocks 256 --width 1024 --tokens 8192]
Prints one RESULT line per mode on rank 0.
"""
import argparse, json, os, time

import torch
import torch.distributed as dist
import torch.nn as nn

p = argparse.ArgumentParser()
p.add_argument("--modes", default="fsdp2,ddp")
p.add_argument("--blocks", type=int, default=256)
p.add_argument("--width", type=int, default=1024)
p.add_argument("--tokens", type=int, default=8192)
p.add_argument("--steps", type=int, default=20)
a = p.parse_args()

dist.init_process_group("nccl")
rank, world = dist.get_rank(), dist.get_world_size()
local = int(os.environ.get("LOCAL_RANK", 0))
torch.cuda.set_device(local)
dev = torch.device("cuda", local)


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.l = nn.Linear(width, width)

    def forward(self, x):
        return x + torch.relu(self.l(x))


class Stress(nn.Module):
    def __init__(self, blocks, width):
        super().__init__()
        self.layers = nn.ModuleList(Block(width) for _ in range(blocks))

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x.float().pow(2).mean()


torch.manual_seed(0)
x = torch.randn(a.tokens, a.width, device=dev, dtype=torch.bfloat16) * 0.1


def measure(step):
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    wall, cpu = [], []
    for _ in range(a.steps):
        c0, t0 = time.process_time(), time.perf_counter()
        step()
        done = torch.cuda.Event(blocking=True)  # the host sleeps while it waits: no CPU time for the wait
        done.record()
        done.synchronize()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    wall.sort(), cpu.sort()
    return wall[len(wall) // 2], cpu[len(cpu) // 2]


def plain():
    model = Stress(a.blocks, a.width).to(dev, torch.bfloat16)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, fused=True)

    def step():
        model(x).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return measure(step), sum(1 for _ in model.parameters())


def sharded(mode):
    model = Stress(a.blocks, a.width).to(dev)
    if mode == "fsdp2":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        for layer in model.layers:
            fully_shard(layer, mp_policy=mp)
        fully_shard(model, mp_policy=mp)
        autocast = False
    else:
        from torch.nn.parallel import DistributedDataParallel as DDP
        model = DDP(model, device_ids=[local], gradient_as_bucket_view=True)
        autocast = True
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, fused=True)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            loss = model(x)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return measure(step)


(base_wall, base_cpu), tensors = plain()
if rank == 0:
    print("RESULT " + json.dumps(dict(bench="host_peer", run="torch_plain", world=world, tensors=tensors,
                                      step_ms=round(base_wall * 1e3, 3), cpu_ms=round(base_cpu * 1e3, 3))), flush=True)
for mode in a.modes.split(","):
    wall, cpu = sharded(mode)
    if rank == 0:
        extra = cpu - base_cpu
        print("RESULT " + json.dumps(dict(bench="host_peer", run=mode, world=world, tensors=tensors,
                                          step_ms=round(wall * 1e3, 3), cpu_ms=round(cpu * 1e3, 3),
                                          extra_cpu_ms=round(extra * 1e3, 3),
                                          extra_cpu_of_step=round(extra / wall, 4))), flush=True)
dist.destroy_process_group()
