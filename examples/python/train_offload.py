"""ZeRO-Offload: the optimizer's fp32 master weights and state in CPU memory, training on the GPUs (or CPU ranks).

    zerotrain launch --num_gpus 2 examples/python/train_offload.py --deepspeed_config examples/configs/zero2_offload_config.json

Optimizer offload to the CPU works at ZeRO stages 1, 2 and 3 ("offload_optimizer": {"device": "cpu"};
examples/configs/zero2_offload_config.json, zero3_offload_config.json): each step copies the reduced gradient shard to
the host, runs the optimizer there and copies the updated parameters (stage 3: the parameter shard) back. At stage 3
the parameters can live on the host too ("offload_param": {"device": "cpu"}, with the optimizer offloaded:
examples/configs/zero_offload_config.json, ZeRO-Infinity on the CPU). The optimizer can go to NVMe instead
("offload_optimizer": {"device": "nvme", "nvme_path": ...}: examples/configs/zero3_nvme_offload_config.json, whose
nvme_path /local_nvme must be a directory on the drive; the master weights and state live in swap files there), and
at stage 3 the parameters too ("offload_param": {"device": "nvme", ...}). A config zerotrain cannot run makes
initialize() raise zerotrain.ConfigError naming the setting; this script reports it and exits with status 2.
"""
import argparse
import sys

import torch

import zerotrain
from corpus import ByteCorpus
from train import TinyGPT


def main():
    parser = argparse.ArgumentParser(description="zerotrain offload example")
    parser.add_argument("--local_rank", type=int, default=-1, help="set by the launcher")
    parser.add_argument("--steps", type=int, default=20)
    parser = zerotrain.add_config_arguments(parser)
    args = parser.parse_args()
    if args.deepspeed_config is None:
        parser.error("--deepspeed_config is required")
    torch.manual_seed(42)
    model = TinyGPT()
    try:
        engine, _, loader, _ = zerotrain.initialize(args=args, model=model, training_data=ByteCorpus(128))
    except zerotrain.ConfigError as e:
        print(f"train_offload.py: cannot run this config: {e}", file=sys.stderr)
        sys.exit(2)
    first = None
    for batch in loader:
        loss = engine(batch["input_ids"].to(engine.device), batch["labels"].to(engine.device))
        engine.backward(loss)
        engine.step()
        first = loss.item() if first is None else first
        if engine.global_steps >= args.steps:
            break
    if engine.global_rank == 0:
        print(f"done: {engine.global_steps} steps, loss {first:.4f} -> {loss.item():.4f}")


if __name__ == "__main__":
    main()
