"""Runs on every rank (started by `zerotrain launch`): DeepSpeed's wall_clock_breakdown and comms_logger through the
Python API: engine.get_wall_clock_timers() and zerotrain.comm.log_summary / reset_log with the straggler breakdown.
Prints PASS/FAIL lines; exits 1 on a failure."""
import sys

import torch
import torch.distributed as dist

import zerotrain
from worker_common import check, regression_step

STEPS, GAS = 3, 2


def main():
    zerotrain.init_distributed()
    world = dist.get_world_size()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(12, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    config = {"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": GAS, "gradient_clipping": 1.0,
              "optimizer": {"type": "AdamW", "params": {"lr": 1e-3}}, "zero_optimization": {"stage": 2},
              "wall_clock_breakdown": True, "comms_logger": {"enabled": True}}
    engine, _, _, _ = zerotrain.initialize(model=model, config=config)
    g = torch.Generator().manual_seed(1)
    ok = True
    timers = []
    for _ in range(STEPS * GAS):
        x, y = torch.randn(2 * world, 12, generator=g), torch.randn(2 * world, 1, generator=g)
        regression_step(engine, x, y, 2)
        timers.append(engine.get_wall_clock_timers())
    micro = {"fwd_microstep", "bwd_microstep", "bwd_inner_microstep", "bwd_allreduce_microstep", "step_microstep"}
    glob = {"fwd", "bwd", "bwd_inner", "bwd_allreduce", "step"}
    ok &= check("micro_timers_every_step", all(micro <= set(t) for t in timers), str(timers[0]))
    ok &= check("global_timers_at_boundaries", glob <= set(timers[1]) and glob <= set(timers[-1]), str(timers[1]))
    ok &= check("timers_positive", all(v >= 0 for t in timers for v in t.values())
                and timers[1]["bwd"] >= timers[1]["bwd_inner"])

    stats = zerotrain.comm.log_summary(show_straggler=True, return_dict=True)
    summary = stats["summary"]
    ops = set(summary)
    reduced = sum(e["count"] for op in ops if op.startswith("reduce_scatter") for e in summary[op].values())
    gathered = sum(e["count"] for e in summary.get("all_gather_into_tensor", {}).values())
    # Stage 2 reduce-scatters every micro-step and gathers the updated parameters after every optimizer step.
    ok &= check("reduce_scatter_every_micro_step", reduced >= STEPS * GAS, f"{reduced} in {sorted(ops)}")
    ok &= check("all_gather_every_step", gathered >= STEPS, f"{gathered}")
    ok &= check("broadcast_at_start", "broadcast" in ops, f"{sorted(ops)}")
    rows = [e for op in summary.values() for e in op.values()]
    ok &= check("latency_and_bandwidth", all(e["avg_latency_ms"] > 0 and e["total_latency_ms"] > 0 for e in rows)
                and all(e["busbw_avg_gbps"] > 0 for op, es in summary.items() if op != "barrier"
                        for e in es.values()))
    strag = stats["straggler_analysis"]
    ok &= check("straggler_breakdown", set(strag) == ops and all(
        0 <= s["total_comm_lat_ms"] <= summary[op][size]["total_latency_ms"] + 1e-9 and s["total_straggler_ms"] >= 0
        for op, sizes in strag.items() for size, s in sizes.items()))
    ok &= check("metadata", stats["metadata"]["world_size"] == world and stats["metadata"]["rank"] == dist.get_rank())
    zerotrain.comm.reset_log()
    after = zerotrain.comm.log_summary(return_dict=True)
    ok &= check("reset_log", after["summary"] == {}, str(after["summary"]))
    dist.barrier()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
