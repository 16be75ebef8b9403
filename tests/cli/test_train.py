"""`zerotrain train`: the main job trains on 2 CPU ranks (through zerotrain launch + mpirun) and the loss falls."""
import importlib.util
import json
import pathlib
import re

import pytest


def test_train_two_cpu_ranks_loss_falls(run, examples):
    proc = run("train", "--config", examples / "train_cpu.json", "--model", "llama-byte-small", "--steps", 60,
               "--ranks", 2, "--log-every", 20, "--device", "cpu", check_rc=0)
    out = proc.stdout
    assert "2 rank(s) on cpu, ZeRO stage 2" in out, out
    losses = [float(m) for m in re.findall(r"\| loss ([0-9.]+) \|", out)]
    assert len(losses) == 3, out
    assert losses[0] < 5.0 and losses[-1] < losses[0] - 0.3, losses
    assert "done: 60 steps, 960 samples, 0 skipped" in out


def test_train_rejects_unknown_model(run, examples):
    proc = run("train", "--config", examples / "train_cpu.json", "--model", "gpt5", "--ranks", 1)
    assert proc.returncode == 1
    assert "gpt5" in proc.stderr and "llama-byte-small" in proc.stderr


def read_safetensors(path):
    """A minimal safetensors reader (the format: u64 header length, JSON header, raw data)."""
    import json
    import struct

    import torch
    blob = path.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    header.pop("__metadata__", None)
    dtypes = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        data = bytearray(blob[8 + n + begin:8 + n + end])
        out[name] = torch.frombuffer(data, dtype=dtypes[info["dtype"]]).reshape(info["shape"])
    return out


def test_train_stage3_checkpointed_saves_hugging_face_weights(run, tmp_path):
    config = ('{"train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 1, "bf16": {"enabled": true}, '
              '"optimizer": {"type": "AdamW", "params": {"lr": 0.01}}, "zero_optimization": {"stage": 3, '
              '"stage3_param_persistence_threshold": 1000, "stage3_gather_16bit_weights_on_model_save": true}}')
    proc = run("train", "--config", config, "--model", "llama-byte-small", "--steps", 30, "--ranks", 2,
               "--log-every", 15, "--device", "cpu", "--activation-checkpointing", "--save-model", tmp_path,
               check_rc=0)
    out = proc.stdout
    assert "2 rank(s) on cpu, ZeRO stage 3, bf16" in out, out
    losses = [float(m) for m in re.findall(r"\| loss ([0-9.]+) \|", out)]
    assert len(losses) == 2 and losses[-1] < losses[0], out
    weights = read_safetensors(tmp_path / "model.safetensors")
    assert weights["model.embed_tokens.weight"].shape == (256, 128)
    assert weights["lm_head.weight"].dtype.is_floating_point
    assert len([k for k in weights if k.startswith("model.layers.")]) == 4 * 9  # 4 blocks x 9 tensors
    assert all(bool(t.abs().sum() > 0) for t in weights.values())


def test_train_stage3_save_without_gather_flag_fails_with_the_key(run, tmp_path):
    config = ('{"train_micro_batch_size_per_gpu": 2, "optimizer": {"type": "SGD", "params": {"lr": 0.01}}, '
              '"zero_optimization": {"stage": 3}}')
    proc = run("train", "--config", config, "--model", "llama-tiny", "--steps", 1, "--ranks", 1,
               "--device", "cpu", "--save-model", tmp_path)
    assert proc.returncode == 1
    assert "stage3_gather_16bit_weights_on_model_save" in proc.stderr


def test_train_resumes_bit_identically_from_a_checkpoint(run, examples, tmp_path):
    common = ("--config", examples / "train_cpu.json", "--model", "llama-tiny", "--steps", 20, "--ranks", 2,
              "--log-every", 10, "--device", "cpu", "--checkpoint-dir", tmp_path)
    full = run("train", *common, "--save-every", 10, check_rc=0).stdout
    assert f"checkpoint {tmp_path}/global_step10" in full and (tmp_path / "latest").read_text().strip() == "global_step20"
    resumed = run("train", *common, "--resume", "global_step10", check_rc=0).stdout
    assert "at step 10" in resumed, resumed
    step20 = [line.split("|")[1] for line in full.splitlines() if line.startswith("step 20/20")]
    step20_resumed = [line.split("|")[1] for line in resumed.splitlines() if line.startswith("step 20/20")]
    assert step20 and step20 == step20_resumed, (full, resumed)  # " loss x.xxxx ": the same window, same value


def test_train_resume_without_checkpoint_is_an_error_naming_the_file(run, examples, tmp_path):
    proc = run("train", "--config", examples / "train_cpu.json", "--model", "llama-tiny", "--steps", 2, "--ranks", 1,
               "--device", "cpu", "--checkpoint-dir", tmp_path, "--resume", "latest")
    assert proc.returncode == 1
    assert f"{tmp_path}/latest: missing" in proc.stderr, proc.stderr


def test_convert_checkpoint_to_hugging_face_safetensors(run, tmp_path):
    import json

    import torch
    config = ('{"train_micro_batch_size_per_gpu": 2, "optimizer": {"type": "AdamW", "params": {"lr": 0.01}}, '
              '"zero_optimization": {"stage": 3, "stage3_gather_16bit_weights_on_model_save": true}}')
    run("train", "--config", config, "--model", "gpt2-tiny", "--steps", 3, "--ranks", 2, "--device", "cpu",
        "--checkpoint-dir", tmp_path / "ckpt", "--save-model", tmp_path / "model", check_rc=0)
    # fp32 training: the checkpoint's master weights are the model's weights.
    out = run("convert", tmp_path / "ckpt", "--out", tmp_path / "hf", check_rc=0).stdout
    assert "model.safetensors" in out
    converted = read_safetensors(tmp_path / "hf" / "model.safetensors")
    saved = read_safetensors(tmp_path / "model" / "model.safetensors")
    assert set(converted) == set(saved) and len(converted) == 2 + 12 * 2 + 2
    for name, t in converted.items():
        want = saved[name].t() if name.endswith(("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight",
                                                 "mlp.c_proj.weight")) else saved[name]
        assert torch.equal(t, want), name  # Hugging Face's Conv1D layout for GPT-2's four matrices
    assert converted["transformer.h.0.attn.c_attn.weight"].shape == (64, 192)
    # Sharded, bf16: Hugging Face's index layout.
    run("convert", tmp_path / "ckpt", "--out", tmp_path / "sharded", "--dtype", "bf16", "--max-shard-size", "40KB",
        check_rc=0)
    index = json.loads((tmp_path / "sharded" / "model.safetensors.index.json").read_text())
    files = set(index["weight_map"].values())
    assert len(files) > 1 and set(index["weight_map"]) == set(converted)
    merged = {}
    for f in files:
        merged.update(read_safetensors(tmp_path / "sharded" / f))
    assert all(merged[n].dtype == torch.bfloat16 and torch.equal(merged[n], converted[n].bfloat16()) for n in merged)


def test_convert_errors_name_the_problem(run, tmp_path):
    proc = run("convert", tmp_path / "none", "--out", tmp_path / "o")
    assert proc.returncode == 1 and f"{tmp_path}/none/latest: missing" in proc.stderr
    proc = run("convert", tmp_path, "--out", tmp_path / "o", "--max-shard-size", "lots")
    assert proc.returncode != 0 and "--max-shard-size" in proc.stderr and "lots" in proc.stderr


def test_train_starts_from_converted_hugging_face_weights(run, examples, tmp_path):
    common = ("--config", examples / "train_cpu.json", "--model", "llama-tiny", "--ranks", 1, "--device", "cpu",
              "--log-every", 1)
    first = run("train", *common, "--steps", 30, "--checkpoint-dir", tmp_path / "ckpt", check_rc=0).stdout
    run("convert", tmp_path / "ckpt", "--out", tmp_path / "hf", check_rc=0)
    again = run("train", *common, "--steps", 1, "--init-from", tmp_path / "hf", check_rc=0).stdout
    loss = [float(m) for m in re.findall(r"\| loss ([0-9.]+) \|", first)]
    start = [float(m) for m in re.findall(r"\| loss ([0-9.]+) \|", again)]
    assert len(loss) == 30 and len(start) == 1
    assert start[0] < loss[0] - 0.3, (loss, start)  # the trained weights, not a fresh initialization


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="transformers is not installed")
@pytest.mark.parametrize("model", ["llama-tiny", "gpt2-tiny"])
def test_converted_checkpoint_loads_in_transformers(run, examples, tmp_path, model):
    # zerotrain convert writes config.json next to the weights: from_pretrained builds the same model, whose loss
    # on the corpus is the one training reached (a wrong name, layout or RoPE convention would give ~ln 256).
    import torch
    import transformers
    log = run("train", "--config", examples / "train_cpu.json", "--model", model, "--steps", 40, "--ranks", 1,
              "--device", "cpu", "--log-every", 1, "--checkpoint-dir", tmp_path / "ckpt", check_rc=0).stdout
    losses = [float(m) for m in re.findall(r"\| loss ([0-9.]+) \|", log)]
    run("convert", tmp_path / "ckpt", "--out", tmp_path / "hf", check_rc=0)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert type(hf).__name__ == ("LlamaForCausalLM" if model.startswith("llama") else "GPT2LMHeadModel")
    corpus = b"".join(p.read_bytes() for p in sorted((pathlib.Path(__file__).parents[2] / "data" / "corpus").glob("*.txt")))
    ids = torch.tensor(list(corpus[:16 * 64]), dtype=torch.long).view(16, 64)
    with torch.no_grad():
        loss = hf(input_ids=ids, labels=ids).loss.item()
    recent = sum(losses[-5:]) / 5
    assert abs(loss - recent) < 0.3 and loss < 4.0, (loss, losses)


def test_train_writes_deepspeed_csv_and_tensorboard_monitors(run, tmp_path):
    config = json.dumps({"train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 1,
                         "optimizer": {"type": "AdamW", "params": {"lr": 1e-3}}, "zero_optimization": {"stage": 1},
                         "csv_monitor": {"enabled": True, "output_path": str(tmp_path), "job_name": "csv"},
                         "tensorboard": {"enabled": True, "output_path": str(tmp_path), "job_name": "tb"}})
    run("train", "--config", config, "--model", "llama-tiny", "--seq", 32, "--steps", 6, "--ranks", 1, "--device", "cpu",
        check_rc=0)
    rows = (tmp_path / "csv" / "Train_Samples_train_loss.csv").read_text().splitlines()
    assert rows[0] == "step,train_loss" and len(rows) == 7, rows
    assert [int(r.split(",")[0]) for r in rows[1:]] == [0, 4, 8, 12, 16, 20]
    assert all(0 < float(r.split(",")[1]) < 10 for r in rows[1:]), rows
    assert (tmp_path / "csv" / "Train_Samples_lr.csv").read_text().startswith("step,lr\n4,")
    events = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 6 * 2 * 40, events


def test_train_refuses_wandb_and_comet_naming_the_key(run):
    # The wandb / comet monitors log through their Python clients (the Python package has them); `zerotrain train`
    # is C++: it refuses the config at startup, naming the key and what to use instead, before training anything.
    config = json.dumps({"train_micro_batch_size_per_gpu": 2, "optimizer": {"type": "AdamW"},
                         "wandb": {"enabled": True, "project": "p"}})
    proc = run("train", "--config", config, "--model", "llama-tiny", "--seq", 32, "--steps", 2, "--ranks", 1,
               "--device", "cpu")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "wandb.enabled = true" in proc.stderr and "zerotrain.initialize" in proc.stderr, proc.stderr
    assert "tensorboard" in proc.stderr and "| loss" not in proc.stdout


def test_train_comms_logger_and_wall_clock_breakdown_on_two_ranks(run):
    # DeepSpeed configs with the comms logger and the engine timers on: `zerotrain train` prints rank 0's timer lines
    # and, at the end, the summary of the collectives the engine issued (ZeRO-2: reduce-scatters every step,
    # all-gathers of the updated parameters, the start-up broadcast).
    config = json.dumps({"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 1,
                         "optimizer": {"type": "AdamW", "params": {"lr": 1e-3}}, "zero_optimization": {"stage": 2},
                         "wall_clock_breakdown": True, "comms_logger": {"enabled": True, "verbose": True}})
    out = run("train", "--config", config, "--model", "llama-tiny", "--seq", 32, "--steps", 4, "--ranks", 2,
              "--device", "cpu", check_rc=0).stdout
    assert out.count("[Rank 0] time (ms) | fwd_microstep: ") == 4, out
    assert out.count("[Rank 0] time (ms) | fwd: ") == 4, out
    assert out.count("Comm. Op            Message Size") == 1, out  # rank 0 only
    table = out[out.index("Comm. Op"):]
    for op in ("broadcast", "all_gather_into_tensor"):
        assert f"\n{op}\n" in table, table
    assert "\nreduce_scatter_tensor\n" in table or "\nreduce_scatter_coalesced\n" in table, table
    assert re.search(r"\[Rank 0\] comm op: all_gather_into_tensor \| time \(ms\): [0-9.]+ \| msg size: [0-9.]+ [KMG]?B "
                     r"\| algbw \(Gbps\): [0-9.]+ \| busbw \(Gbps\): [0-9.]+", out), out
    # every all-gather row: 4 of them (one a step) at one size, with a positive bus bandwidth
    rows = table.split("\nall_gather_into_tensor\n")[1].splitlines()
    count, busbw = int(rows[0].split()[2]), float(rows[0].split()[-1])
    assert count % 4 == 0 and busbw > 0, rows[0]


def _final_loss(out):
    return float(re.findall(r"\| loss ([0-9.]+) \|", out)[-1])


def _gather_bytes(out):
    """Bytes of every all-gather in the comms_logger table: {message size string: count}."""
    table = out[out.index("Comm. Op"):]
    rows = table.split("\nall_gather_into_tensor\n")[1].split("\n")
    sizes = {}
    for r in rows:
        if not r.startswith(" " * 20):
            break
        f = r.split()
        sizes[f[0] + " " + f[1]] = int(f[2])
    return sizes


def test_train_zero_quantized_weights_gathers_int8_on_two_ranks(run):
    # ZeRO++ qwZ at stage 3: the all-gathers move int8 blocks (about a quarter of fp32's bytes) and training follows
    # the unquantized run closely (the weights forward and backward read are within half a quantization step).
    def train(qwz):
        config = json.dumps({"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 1,
                             "optimizer": {"type": "AdamW", "params": {"lr": 3e-3}},
                             "zero_optimization": {"stage": 3, "zero_quantized_weights": qwz,
                                                   "stage3_param_persistence_threshold": 0},
                             "comms_logger": {"enabled": True}})
        return run("train", "--config", config, "--model", "llama-tiny", "--seq", 32, "--steps", 8, "--ranks", 2,
                   "--device", "cpu", "--log-every", 1, check_rc=0).stdout

    plain, quantized = train(False), train(True)
    plain_bytes = sum(_size_bytes(s) * c for s, c in _gather_bytes(plain).items())
    quant_bytes = sum(_size_bytes(s) * c for s, c in _gather_bytes(quantized).items())
    assert 0.2 < quant_bytes / plain_bytes < 0.35, (plain_bytes, quant_bytes, plain, quantized)
    lp, lq = _final_loss(plain), _final_loss(quantized)
    assert abs(lp - lq) < 0.02 * lp, (lp, lq)
    assert lq < _first_loss(quantized), quantized  # it trains


def _first_loss(out):
    return float(re.findall(r"\| loss ([0-9.]+) \|", out)[0])


def _size_bytes(s):
    value, unit = s.split()
    return float(value) * 1024 ** ["B", "KB", "MB", "GB"].index(unit)


def test_train_refuses_hierarchical_partitioning_below_the_world(run):
    config = json.dumps({"train_micro_batch_size_per_gpu": 2, "optimizer": {"type": "AdamW", "params": {"lr": 1e-3}},
                         "zero_optimization": {"stage": 3, "zero_hpz_partition_size": 1, "zero_quantized_weights": True}})
    run("train", "--config", config, "--model", "llama-tiny", "--seq", 16, "--steps", 1, "--ranks", 2, "--device", "cpu",
        check_rc=0)
    bad = config.replace('"zero_hpz_partition_size": 1', '"zero_hpz_partition_size": 3')
    proc = run("train", "--config", bad, "--model", "llama-tiny", "--seq", 16, "--steps", 1, "--ranks", 2,
               "--device", "cpu")
    assert proc.returncode != 0
    assert "zero_optimization.zero_hpz_partition_size" in proc.stderr and \
        "3 does not divide the world size 2; allowed: 1, the world size, or a divisor of it" in proc.stderr, proc.stderr
