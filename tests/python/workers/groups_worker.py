"""Runs on every rank (started by `zerotrain launch`): trains with param groups that differ in weight_decay (the
decay / no-decay split of DeepSpeed scripts: weights decay, biases do not) and, with --lr_mult, in lr (the biases'
group at lr_mult x the weights'), given as a client optimizer's param_groups or as model_parameters with the config's
optimizer, optionally under a client LambdaLR (--scheduler), and checks each step's loss and the final weights
against unsharded torch training with the same groups. Prints PASS/FAIL lines; exits 1 on a failure."""
import argparse
import sys

import torch
import torch.distributed as dist

import zerotrain
from worker_common import check, regression_step

LR = 5e-2


def make_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(12, 32), torch.nn.Tanh(), torch.nn.Linear(32, 32), torch.nn.Tanh(),
                               torch.nn.Linear(32, 1))


def groups(model, decay, lr_mult=1.0):
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    bias_group = {"params": biases, "weight_decay": 0.0}
    if lr_mult != 1.0:
        bias_group["lr"] = LR * lr_mult  # the weights' group keeps the optimizer's (the config's) lr
    return [{"params": weights, "weight_decay": decay}, bias_group]


def schedule(step):
    return 0.7 ** step


def torch_optimizer(kind, params):
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=LR, betas=(0.9, 0.95), eps=1e-8)
    if kind == "adam_l2":
        return torch.optim.Adam(params, lr=LR, betas=(0.9, 0.95), eps=1e-8)
    return torch.optim.SGD(params, lr=LR, momentum=0.9)


def config_optimizer(kind):
    if kind == "adam_l2":
        return {"type": "Adam", "params": {"lr": LR, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.3,
                                           "adam_w_mode": False}}
    return {"type": "SGD", "params": {"lr": LR, "momentum": 0.9, "weight_decay": 0.3}}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--local_rank", type=int, default=0)
    parser.add_argument("--kind", choices=["adamw", "adam_l2", "sgd"], default="adamw")
    parser.add_argument("--stage", type=int, default=2)
    parser.add_argument("--lr_mult", type=float, default=1.0)
    parser.add_argument("--scheduler", action="store_true", help="a client LambdaLR on the optimizer")
    args = parser.parse_args()
    zerotrain.init_distributed()
    world = dist.get_world_size()
    micro, steps, decay = 2, 6, 0.3
    tag = f"{args.kind}_stage{args.stage}_lr{args.lr_mult:g}{'_scheduler' if args.scheduler else ''}"

    model, reference = make_model(), make_model()
    ref_opt = torch_optimizer(args.kind, groups(reference, decay, args.lr_mult))
    ref_sched = torch.optim.lr_scheduler.LambdaLR(ref_opt, schedule) if args.scheduler else None
    config = {"train_micro_batch_size_per_gpu": micro, "gradient_accumulation_steps": 1, "gradient_clipping": 0.0,
              "zero_optimization": {"stage": args.stage, "stage3_param_persistence_threshold": 0,
                                    "reduce_bucket_size": 600}}
    if args.kind == "adamw":  # a client optimizer with two groups
        client = torch_optimizer(args.kind, groups(model, decay, args.lr_mult))
        sched = torch.optim.lr_scheduler.LambdaLR(client, schedule) if args.scheduler else None
        engine, _, _, _ = zerotrain.initialize(model=model, config=config, optimizer=client, lr_scheduler=sched)
    else:  # model_parameters groups over the config's optimizer (its weight_decay is the weights' group's)
        config["optimizer"] = config_optimizer(args.kind)
        engine, _, _, _ = zerotrain.initialize(model=model, config=config,
                                               model_parameters=groups(model, decay, args.lr_mult))
    got, want = engine.get_lr(), ([LR, LR * args.lr_mult] if args.lr_mult != 1.0 else [LR])
    ok = check(f"{tag} get_lr per group", len(got) == len(want) and all(
        abs(a - b) <= 1e-12 * abs(b) for a, b in zip(got, want)), f"{got} (want {want})")
    g = torch.Generator().manual_seed(3)
    worst = 0.0
    for _ in range(steps):
        x, y = torch.randn(micro * world, 12, generator=g), torch.randn(micro * world, 1, generator=g)
        mean = regression_step(engine, x, y, micro)
        ref_opt.zero_grad()
        ref_loss = torch.nn.functional.mse_loss(reference(x), y)
        ref_loss.backward()
        ref_opt.step()
        if ref_sched is not None:
            ref_sched.step()
        worst = max(worst, abs(mean - ref_loss.item()) / abs(ref_loss.item()))
    # Tolerances allow a GPU against the host reference; a bias decayed by mistake is off by ~1.5% per step.
    ok &= check(f"{tag} losses match torch with the same groups", worst < 1e-4, f"worst relative {worst:.2e}")
    with zerotrain.zero.GatheredParameters(engine):
        diffs = [(p.detach().float().cpu() - q.detach()).abs().max().item()
                 for p, q in zip(model.parameters(), reference.parameters())]
    ok &= check(f"{tag} weights match torch with the same groups", max(diffs) < 1e-4,
                f"max difference {max(diffs):.2e}")
    dist.barrier()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
