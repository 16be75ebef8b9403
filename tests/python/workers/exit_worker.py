"""Runs on every rank (started by `zerotrain launch`): trains a few steps, then exits the way scripts do, and checks
from the last exit handler that no gloo worker thread outlives the process group into interpreter finalization
(where one finishing a collective aborts the process: "terminate called without an active exception").

--capture: a module-level function takes the default group as a default argument after init (as
torch.distributed.nn.functional did when imported late), which kept the group alive after destroy_process_group.
--destroy: the script destroys its group itself before exiting."""
import argparse
import atexit
import os
import sys

import torch
import torch.distributed as dist


def gloo_threads():
    names = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                names.append(f.read().strip())
        except OSError:  # the thread ended meanwhile
            pass
    return sum(name.startswith("pt_gloo") for name in names)


def report(tag, rank):
    left = gloo_threads()
    print(f"{'PASS' if left == 0 else 'FAIL'} rank{rank} {tag}: {left} gloo threads left at interpreter exit",
          flush=True)
    if left:
        os._exit(1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--local_rank", type=int, default=0)
    parser.add_argument("--capture", action="store_true")
    parser.add_argument("--destroy", action="store_true")
    args = parser.parse_args()
    import zerotrain  # imported here, after this handler's module, as a script imports it
    rank_holder = {}
    # Registered before init_distributed, so it runs after zerotrain's exit handler (atexit runs last-in first-out).
    atexit.register(lambda: report(f"capture={args.capture} destroy={args.destroy}", rank_holder["rank"]))
    zerotrain.init_distributed()
    rank = rank_holder["rank"] = dist.get_rank()
    if args.capture:
        namespace = {}
        exec("import torch.distributed as dist\ndef collective(tensor, group=dist.group.WORLD):\n"
             "    return dist.all_reduce(tensor, group=group)\n", namespace)
        module = type(sys)("captured_group_module")
        module.collective = namespace["collective"]
        sys.modules[module.__name__] = module
        module.collective(torch.ones(2))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 1))
    engine, _, _, _ = zerotrain.initialize(model=model, config={
        "train_micro_batch_size_per_gpu": 2, "gradient_clipping": 0.0,
        "optimizer": {"type": "AdamW", "params": {"lr": 1e-3}}, "zero_optimization": {"stage": 2}})
    for _ in range(2):
        loss = engine(torch.randn(2, 8)).sum()
        engine.backward(loss)
        engine.step()
    total = loss.detach().clone()
    dist.all_reduce(total)
    if args.destroy:
        dist.destroy_process_group()
    sys.exit(0)


if __name__ == "__main__":
    main()
