"""Runs on every rank (started by `zerotrain launch`): transformers' Trainer through zerotrain.hf.Trainer with a
DeepSpeed config full of "auto" values. Checks that the loss falls, that the saved checkpoint loads with
from_pretrained, and that resuming from it reproduces the uninterrupted run's losses. Prints PASS/FAIL lines."""
import argparse
import os
import shutil
import sys
import tempfile

import torch
import torch.distributed as dist
import transformers

import zerotrain
from zerotrain.hf import Trainer

CONFIG = {
    "train_micro_batch_size_per_gpu": "auto",
    "gradient_accumulation_steps": "auto",
    "train_batch_size": "auto",
    "gradient_clipping": "auto",
    "bf16": {"enabled": "auto"},
    "optimizer": {"type": "AdamW", "params": {"lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto"}},
    "scheduler": {"type": "WarmupDecayLR", "params": {"warmup_min_lr": "auto", "warmup_max_lr": "auto",
                                                      "warmup_num_steps": "auto", "total_num_steps": "auto"}},
    "zero_optimization": {"stage": 3, "reduce_bucket_size": "auto", "stage3_prefetch_bucket_size": "auto",
                          "stage3_param_persistence_threshold": "auto"},
}


class Sequences(torch.utils.data.Dataset):
    def __init__(self, n=64, seq=16, vocab=64):
        g = torch.Generator().manual_seed(3)
        base = torch.randint(0, vocab, (8, seq), generator=g)
        self.data = base.repeat(n // 8, 1)

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return {"input_ids": self.data[i], "labels": self.data[i]}


def model():
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return transformers.LlamaForCausalLM(cfg)


def arguments(out, stage, bf16, steps, weight_decay=0.01):
    return transformers.TrainingArguments(
        output_dir=out, per_device_train_batch_size=2, gradient_accumulation_steps=2, max_steps=steps,
        learning_rate=1e-2, warmup_steps=2, weight_decay=weight_decay, max_grad_norm=1.0, logging_steps=1,
        save_steps=6, save_strategy="steps", report_to=[], use_cpu=not torch.cuda.is_available(), bf16=bf16, seed=0,
        dataloader_drop_last=True, disable_tqdm=True)


def losses(trainer):
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--local_rank", type=int, default=0)
    parser.add_argument("--stage", type=int, default=3)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--offload", action="store_true", help="offload_optimizer to the CPU (ZeRO-Offload)")
    parser.add_argument("--no_sections", action="store_true",
                        help="a config without \"optimizer\" and \"scheduler\": the Trainer's own AdamW and schedule")
    args = parser.parse_args()
    zerotrain.init_distributed()
    rank = dist.get_rank()
    config = dict(CONFIG, zero_optimization=dict(CONFIG["zero_optimization"], stage=args.stage))
    if args.offload:
        config["zero_optimization"]["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    # Without the sections, a large weight decay: one applied to the Trainer's no-decay group (norms) would show.
    decay = 0.5 if args.no_sections else 0.01
    if args.no_sections:
        del config["optimizer"], config["scheduler"]
    out = [tempfile.mkdtemp(prefix="zt-trainer-") if rank == 0 else None]
    dist.broadcast_object_list(out)
    out = out[0]
    ok = True

    def check(name, cond, detail):
        nonlocal ok
        ok &= bool(cond)
        print(f"{'PASS' if cond else 'FAIL'} rank{rank} {name}: {detail}", flush=True)

    trainer = Trainer(model=model(), args=arguments(out, args.stage, args.bf16, 12, decay), train_dataset=Sequences(),
                      zerotrain_config=config)
    trainer.train()
    full = losses(trainer)
    falls = 0.8 if args.no_sections else 0.7  # the Trainer's linear decay leaves a lower final learning rate
    check("loss_falls", len(full) == 12 and full[-1] < falls * full[0], f"{full[0]:.4f} -> {full[-1]:.4f}")
    engine = trainer._zt_engine
    check("auto_values", engine.train_batch_size() == 4 * dist.get_world_size() and
          engine.gradient_accumulation_steps() == 2 and engine.config["gradient_clipping"] == 1.0,
          f"train_batch_size {engine.train_batch_size()}, gas {engine.gradient_accumulation_steps()}")
    lrs = [h["learning_rate"] for h in trainer.state.log_history if "learning_rate" in h]
    if args.no_sections:
        # Transformers' own Trainer (DDP over the same gloo group) with its AdamW on decay / no-decay groups and its
        # linear schedule: the same losses.
        plain = transformers.Trainer(model=model(), args=arguments(tempfile.mkdtemp(prefix="zt-plain-"), args.stage,
                                                                   args.bf16, 12, decay), train_dataset=Sequences())
        plain.train()
        reference = losses(plain)
        worst = max(abs(a - b) / abs(b) for a, b in zip(full, reference))
        check("matches_transformers", len(reference) == len(full) and worst < 1e-4,
              f"worst relative difference {worst:.2e}: {full} vs {reference}")
    else:
        check("schedule", lrs[0] == 0 and max(lrs) == 1e-2 and lrs[-1] < 1e-2, f"learning rates {lrs}")

    # save_model writes what the engine trained (gathered at stage 3), loadable by from_pretrained.
    final = os.path.join(out, "final")
    trainer.save_model(final)
    with zerotrain.zero.GatheredParameters(engine):
        trained = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    if rank == 0:
        loaded = transformers.LlamaForCausalLM.from_pretrained(final, torch_dtype=next(iter(trained.values())).dtype)
        diffs = [(k, (v - trained[k].cpu()).abs().max().item()) for k, v in loaded.state_dict().items()]
        check("save_model", max(d for _, d in diffs) == 0 and len(diffs) == len(trained),
              f"{len(diffs)} tensors, largest difference {max(d for _, d in diffs)}")
    checkpoint = os.path.join(out, "checkpoint-6")
    if rank == 0:
        loaded = transformers.LlamaForCausalLM.from_pretrained(checkpoint)
        check("from_pretrained", sum(p.numel() for p in loaded.parameters()) ==
              sum(p.numel() for p in model().parameters()), f"loaded {checkpoint}")
    # Resume from step 6 in a fresh Trainer: steps 7-12 repeat the uninterrupted run.
    resumed = Trainer(model=model(), args=arguments(out, args.stage, args.bf16, 12, decay), train_dataset=Sequences(),
                      zerotrain_config=config)
    resumed.train(resume_from_checkpoint=checkpoint)
    again = losses(resumed)[-6:]
    worst = max(abs(a - b) / abs(b) for a, b in zip(again, full[-6:]))
    check("resume", worst < 1e-3, f"steps 7-12 {again} vs {full[-6:]}")
    dist.barrier()
    if rank == 0:
        shutil.rmtree(out, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
