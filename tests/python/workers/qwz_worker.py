"""Runs on every rank (started by `zerotrain launch`): ZeRO++ qwZ (zero_quantized_weights) at stage 3. Training reads
quantized weights, but what users read or write stays exact: the 16-bit save and a GatheredParameters scope that
changes nothing leave the weights bit-identical to the model's (after training gathered them quantized too), and the
master is not touched by them. Prints PASS/FAIL lines; exits 1 on a failure."""
import os
import sys
import tempfile

import torch
import torch.distributed as dist
from safetensors.torch import load_file

import zerotrain
from worker_common import check, regression_step


def make_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.Tanh(), torch.nn.Linear(256, 64),
                               torch.nn.Tanh(), torch.nn.Linear(64, 1))


def saved(engine, directory, name):
    engine.save_16bit_model(directory, name)
    dist.barrier()
    return load_file(os.path.join(directory, name))


def main():
    zerotrain.init_distributed()
    world = dist.get_world_size()
    reference = {k: v.detach().clone() for k, v in make_model().state_dict().items()}
    config = {"train_micro_batch_size_per_gpu": 2, "gradient_clipping": 0.0,
              "optimizer": {"type": "SGD", "params": {"lr": 0.0}},
              "zero_optimization": {"stage": 3, "zero_quantized_weights": True,
                                    "stage3_param_persistence_threshold": 0,
                                    "stage3_gather_16bit_weights_on_model_save": True}}
    engine, _, _, _ = zerotrain.initialize(model=make_model(), config=config)
    directory = tempfile.mkdtemp(prefix="qwz") if dist.get_rank() == 0 else None
    holder = [directory]
    dist.broadcast_object_list(holder)
    directory = holder[0]
    ok = True

    def same(state):
        return all(torch.equal(state[k].float(), reference[k].float()) for k in reference)

    ok &= check("save_exact_at_start", same(saved(engine, directory, "a.safetensors")))
    # Training steps with lr 0: forward and backward gather quantized weights (the outputs differ from exact ones),
    # the master does not move.
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(2 * world, 64, generator=g), torch.randn(2 * world, 1, generator=g)
    losses = [regression_step(engine, x, y, 2) for _ in range(2)]
    with torch.no_grad():
        exact = torch.nn.functional.mse_loss(make_model()(x), y).item()
    ok &= check("training_reads_quantized_weights", abs(losses[0] - exact) > 0 and abs(losses[0] - exact) < 1e-2 * exact,
                f"{losses[0]} vs exact {exact}")
    with zerotrain.zero.GatheredParameters(engine, modifier_rank=0):
        full = {n: p.detach().to("cpu", copy=True) for n, p in engine.module.named_parameters()}
    ok &= check("gathered_exact", all(torch.equal(full[k].float(), reference[k].float()) for k in full), "")
    ok &= check("save_exact_after_training_and_gather", same(saved(engine, directory, "b.safetensors")))
    dist.barrier()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
