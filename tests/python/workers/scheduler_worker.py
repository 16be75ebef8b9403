"""Runs on every rank (started by `zerotrain launch`): trains under zerotrain with a client lr_scheduler passed to
initialize, as DeepSpeed scripts do (an object built on the script's torch.optim optimizer, or a function of the
optimizer), and checks each step's loss and learning rate against unsharded torch training with the same scheduler,
and that a checkpoint resumes the schedule exactly. Prints PASS/FAIL lines; exits 1 on a failure."""
import argparse
import copy
import shutil
import sys
import tempfile

import torch
import torch.distributed as dist

import zerotrain
from worker_common import check, regression_step

LR = 1e-2
BETAS = (0.9, 0.95)


def make_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(12, 32), torch.nn.Tanh(), torch.nn.Linear(32, 32), torch.nn.Tanh(),
                               torch.nn.Linear(32, 1))


def warmup(step):  # LambdaLR: a warmup over 3 steps, then a constant half
    return (step + 1) / 3 if step < 3 else 0.5


def make_scheduler(kind, optimizer):
    if kind == "object":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, warmup)
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)


def data(steps, global_batch):
    g = torch.Generator().manual_seed(5)
    return [(torch.randn(global_batch, 12, generator=g), torch.randn(global_batch, 1, generator=g))
            for _ in range(steps)]


def build(kind, stage):
    model = make_model()
    config = {"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 1, "gradient_clipping": 0.0,
              "zero_optimization": {"stage": stage, "stage3_param_persistence_threshold": 0}}
    if kind == "object":
        optimizer = torch.optim.AdamW(model.parameters(), lr=LR, betas=BETAS, eps=1e-8, weight_decay=0.0)
        engine, _, _, scheduler = zerotrain.initialize(model=model, optimizer=optimizer, config=config,
                                                       lr_scheduler=make_scheduler(kind, optimizer))
    else:  # the config's optimizer and a function of the optimizer, as DeepSpeed's lr_scheduler=callable
        config["optimizer"] = {"type": "AdamW", "params": {"lr": LR, "betas": list(BETAS), "eps": 1e-8,
                                                           "weight_decay": 0.0}}
        engine, _, _, scheduler = zerotrain.initialize(model=model, config=config,
                                                       lr_scheduler=lambda opt: make_scheduler(kind, opt))
    return engine, scheduler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--local_rank", type=int, default=0)
    parser.add_argument("--kind", choices=["object", "function"], default="object")
    parser.add_argument("--stage", type=int, default=2)
    args = parser.parse_args()
    zerotrain.init_distributed()
    rank, world = dist.get_rank(), dist.get_world_size()
    steps, micro = 6, 2
    batches = data(steps, micro * world)
    tag = f"{args.kind}_stage{args.stage}"

    reference = make_model()
    ref_opt = torch.optim.AdamW(reference.parameters(), lr=LR, betas=BETAS, eps=1e-8, weight_decay=0.0)
    ref_sched = make_scheduler(args.kind, ref_opt)
    engine, scheduler = build(args.kind, args.stage)
    ok = check(f"{tag} initialize returns the client scheduler", scheduler is not None and hasattr(scheduler, "step"))
    ok &= check(f"{tag} first learning rate", abs(engine.get_lr()[0] - ref_opt.param_groups[0]["lr"]) < 1e-12,
                f"{engine.get_lr()[0]} vs {ref_opt.param_groups[0]['lr']}")
    tmp = tempfile.mkdtemp() if rank == 0 else None
    holder = [tmp]
    dist.broadcast_object_list(holder)
    ckpt = holder[0]
    losses, worst, lrs_ok = [], 0.0, True
    for step, (x, y) in enumerate(batches):
        losses.append(regression_step(engine, x, y, micro))
        ref_opt.zero_grad()
        ref_loss = torch.nn.functional.mse_loss(reference(x), y)
        ref_loss.backward()
        ref_opt.step()
        ref_sched.step()
        worst = max(worst, abs(losses[-1] - ref_loss.item()) / abs(ref_loss.item()))
        lrs_ok &= abs(engine.get_lr()[0] - ref_opt.param_groups[0]["lr"]) < 1e-12
        if step == 2:
            engine.save_checkpoint(ckpt, client_state={"step": step})
    ok &= check(f"{tag} matches torch with the same scheduler", worst < 1e-4, f"worst relative difference {worst:.2e}")
    ok &= check(f"{tag} learning rate follows the scheduler after every step", lrs_ok)

    # Resume: a fresh engine and scheduler load step 2's checkpoint and continue as the uninterrupted run did.
    engine2, scheduler2 = build(args.kind, args.stage)
    _, client = engine2.load_checkpoint(ckpt)
    ok &= check(f"{tag} client state comes back without the scheduler's", client == {"step": 2}, str(client))
    resumed = []
    for x, y in batches[3:]:
        resumed.append(regression_step(engine2, x, y, micro))
    ok &= check(f"{tag} resume continues the schedule exactly", resumed == losses[3:], f"{resumed} vs {losses[3:]}")
    ok &= check(f"{tag} resumed learning rate", engine2.get_lr() == engine.get_lr(),
                f"{engine2.get_lr()} vs {engine.get_lr()}")
    dist.barrier()
    if rank == 0:
        shutil.rmtree(ckpt, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
