"""Runs on every rank (started by `zerotrain launch`): a DeepSpeed config with the "wandb" and "comet" monitors on,
their clients offline (the test sets WANDB_MODE=offline, WANDB_DIR and COMET_OFFLINE_DIRECTORY). Rank 0 writes the
losses it trained with to the JSON file named by its first argument; the test reads what wandb and comet recorded. Also logs a
user event through engine.monitor.write_events, as DeepSpeed users do. Prints PASS/FAIL lines; exits 1 on a failure."""
import json
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F

import zerotrain
from worker_common import check

STEPS, GAS, MICRO = 4, 2, 2


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--local_rank")]  # the launcher adds --local_rank=N
    zerotrain.init_distributed()
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(12, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    config = {"train_micro_batch_size_per_gpu": MICRO, "gradient_accumulation_steps": GAS,
              "optimizer": {"type": "AdamW", "params": {"lr": 1e-3}},
              "scheduler": {"type": "WarmupLR", "params": {"warmup_num_steps": 3, "warmup_max_lr": 1e-3}},
              "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},
              "wandb": {"enabled": True, "project": "zt-monitor-test", "group": "g1", "team": "team1"},
              "comet": {"enabled": True, "online": False, "project": "zt-monitor-test", "experiment_name": "monitored",
                        "samples_log_interval": 2 * MICRO * GAS * world}}
    if len(args) > 1 and args[1] == "bad_key":
        # Comet refuses this key on rank 0: every rank must raise at initialize, none wait for rank 0.
        config["comet"]["experiment_key"] = "bad"
        del config["wandb"]
        try:
            zerotrain.initialize(model=model, config=config)
            error = "no error"
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
        print(error, flush=True)
        expected = "ValueError" if rank == 0 else "RuntimeError: rank 0 could not start the comet monitor"
        sys.exit(0 if check("initialize_raised_on_every_rank", error.startswith(expected), error) else 1)
    engine, _, _, _ = zerotrain.initialize(model=model, config=config)
    clients = engine._monitor_clients
    ok = check("clients_started_on_rank_0_only", len(clients._monitors) == (2 if rank == 0 else 0),
               str(clients._monitors))
    ok &= check("monitor_enabled", engine.monitor.enabled)
    g = torch.Generator().manual_seed(1)
    step_losses, lrs = [], []
    for _ in range(STEPS):
        losses = []
        for _ in range(GAS):
            x, y = torch.randn(MICRO * world, 12, generator=g), torch.randn(MICRO * world, 1, generator=g)
            lo = rank * MICRO
            loss = F.mse_loss(engine(x[lo:lo + MICRO]), y[lo:lo + MICRO])
            engine.backward(loss)
            engine.step()
            losses.append(loss.item())
        step_losses.append(sum(losses) / GAS)  # DeepSpeed's train_loss: rank 0's mean over the step's micro-steps
        lrs.append(engine.get_lr()[0])
    samples = engine.global_samples
    engine.monitor.write_events([("Train/Samples/custom", 1.5, samples)])
    if rank == 0:
        with open(args[0], "w") as f:
            json.dump({"losses": step_losses, "lrs": lrs, "train_batch_size": engine.train_batch_size(),
                       "global_samples": samples}, f)
    dist.barrier()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
