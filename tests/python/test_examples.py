"""The Python examples (examples/python) run as documented, on two CPU ranks."""
import importlib.util
import json
import re

import pytest

from conftest import ROOT

EXAMPLES = ROOT / "examples" / "python"
CONFIGS = ROOT / "examples" / "configs"
needs_transformers = pytest.mark.skipif(importlib.util.find_spec("transformers") is None,
                                        reason="transformers is not installed")


def final_losses(out):
    m = re.search(r"loss (\d+\.\d+) -> (\d+\.\d+)", out)
    assert m, out[-4000:]
    return float(m.group(1)), float(m.group(2))


def test_basic_example_trains(launch):
    rc, out = launch(EXAMPLES / "train.py", 2, "--deepspeed_config", CONFIGS / "train_cpu.json", "--steps", "20")
    assert rc == 0, out[-4000:]
    first, last = final_losses(out)
    assert last < 0.7 * first


@needs_transformers
@pytest.mark.parametrize("extra", [[], ["--trainer"]])
def test_hugging_face_example_trains(launch, extra):
    config = EXAMPLES / "hf_auto.json" if extra else CONFIGS / "train_cpu.json"
    rc, out = launch(EXAMPLES / "train_hf.py", 2, "--deepspeed_config", config, "--steps", "20", *extra)
    assert rc == 0, out[-4000:]
    first, last = final_losses(out)
    assert last < 0.85 * first


@pytest.mark.parametrize("config", ["zero2_offload_config.json", "zero3_offload_config.json"])
def test_offload_example_trains_with_the_optimizer_on_the_cpu(launch, config):
    rc, out = launch(EXAMPLES / "train_offload.py", 2, "--deepspeed_config", CONFIGS / config, "--steps", "20")
    assert rc == 0, out[-4000:]
    first, last = final_losses(out)
    assert last < 0.85 * first


def test_offload_example_trains_with_the_optimizer_on_nvme(launch, tmp_path):
    # examples/configs/zero3_nvme_offload_config.json with its nvme_path pointed at a temporary directory
    cfg = json.loads((CONFIGS / "zero3_nvme_offload_config.json").read_text())
    cfg["zero_optimization"]["offload_optimizer"]["nvme_path"] = str(tmp_path)
    (tmp_path / "nvme.json").write_text(json.dumps(cfg))
    rc, out = launch(EXAMPLES / "train_offload.py", 2, "--deepspeed_config", tmp_path / "nvme.json", "--steps", "20")
    assert rc == 0, out[-4000:]
    first, last = final_losses(out)
    assert last < 0.85 * first
    assert [p.name for p in tmp_path.iterdir()] == ["nvme.json"], "swap files are unlinked when made"


def test_offload_example_trains_zero_infinity_on_the_cpu(launch):
    # examples/configs/zero_offload_config.json: stage 3, fp16, the optimizer and the parameters offloaded to the CPU
    # (the ZeRO-3 config of Hugging Face's DeepSpeed docs), gradient accumulation 16 on 2 ranks.
    rc, out = launch(EXAMPLES / "train_offload.py", 2, "--deepspeed_config", CONFIGS / "zero_offload_config.json",
                     "--steps", "6")
    assert rc == 0, out[-4000:]
    first, last = final_losses(out)
    assert last < first

def test_autotuning_a_python_script_measures_each_config_and_writes_the_best(zerotrain_cmd, tmp_path):
    """`zerotrain launch --autotuning tune` on a DeepSpeed-style Python script: each experiment's engine times its
    profile steps, writes metrics.json and ends the script with SystemExit(0) (docs/autotuning.md)."""
    import os
    import pathlib
    import subprocess
    import sys

    from conftest import _free_port

    config = {"train_micro_batch_size_per_gpu": [2, 4], "gradient_accumulation_steps": 1,
              "optimizer": {"type": "AdamW", "params": {"lr": 1e-3}}, "zero_optimization": {"stage": [1, 2]},
              "autotuning": {"enabled": True, "start_profile_step": 1, "end_profile_step": 2}}
    (tmp_path / "ds.json").write_text(json.dumps(config))
    env = dict(os.environ, ZEROTRAIN_PYTHON=sys.executable, OMP_NUM_THREADS="1")
    if os.environ.get("ZEROTRAIN_PYTHONPATH"):
        env["PYTHONPATH"] = str(pathlib.Path(os.environ["ZEROTRAIN_PYTHONPATH"]).resolve()) + os.pathsep + \
            env.get("PYTHONPATH", "")
    binary = str(pathlib.Path(zerotrain_cmd[0]).resolve()) if os.sep in zerotrain_cmd[0] else zerotrain_cmd[0]
    proc = subprocess.run([binary, "launch", "--autotuning", "tune", "--num_gpus", "2", "--master_port",
                           str(_free_port()), str(EXAMPLES / "train.py"), "--deepspeed_config", "ds.json", "--seq", "32",
                           "--steps", "50"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = tmp_path / "autotuning_results"
    for name in ["z1_gas2_tmbspg2", "z1_gas1_tmbspg4", "z2_gas2_tmbspg2", "z2_gas1_tmbspg4"]:
        m = json.loads((results / name / "metrics.json").read_text())
        assert m["train_batch_size"] == 8 and m["profiled_steps"] == 2 and m["throughput"] > 0, m
        assert "SystemExit" not in (results / name / "stderr.log").read_text()
    info = json.loads((results / "profile_model_info" / "model_info.json").read_text())
    assert info["num_params"] == sum(p.numel() for p in _tiny_gpt(32).parameters())
    optimal = json.loads((results / "ds_config_optimal.json").read_text())
    assert optimal["zero_optimization"]["stage"] in (1, 2) and "autotuning" not in optimal


def _tiny_gpt(seq):
    import sys
    sys.path.insert(0, str(EXAMPLES))
    import train  # the example's model
    return train.TinyGPT(seq=seq)


def test_an_experiment_ranked_by_flops_counts_the_scripts_flops(launch, tmp_path):
    """An autotuning experiment with metric "flops" (what `--autotuning` runs): the Python engine counts the first
    micro-step's FLOPs (torch.utils.flop_counter) and the engine reports FLOPS_per_gpu, then the script ends with 0."""
    config = {"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 1,
              "optimizer": {"type": "AdamW", "params": {"lr": 1e-3}}, "zero_optimization": {"stage": 2},
              "autotuning": {"enabled": True, "metric": "flops", "start_profile_step": 1, "end_profile_step": 2,
                             "metric_path": str(tmp_path / "metrics.json")}}
    (tmp_path / "ds.json").write_text(json.dumps(config))
    rc, out = launch(EXAMPLES / "train.py", 2, "--deepspeed_config", tmp_path / "ds.json", "--seq", "32", "--steps", "50")
    assert rc == 0, out[-4000:]
    assert "step   10" not in out  # ended after the second step
    m = json.loads((tmp_path / "metrics.json").read_text())
    per_sample = m["FLOPS_per_gpu"] * (m["latency"] / 1000) * m["world_size"] / m["train_batch_size"]
    # TinyGPT (d 128, 4 blocks, vocab 256) at 32 tokens: matrix products 6 x 32 x (4 x 12 d^2 + 256 d) ~ 4.1e7 plus
    # attention's scores and values (fwd + bwd 3 x 4 x 32^2 x 128 x 4 blocks ~ 6.3e6).
    model = _tiny_gpt(32)
    linear = sum(p.numel() for n, p in model.named_parameters() if p.dim() == 2 and not n.startswith(("embed", "pos")))
    assert 0.9 * 6 * 32 * linear < per_sample < 1.5 * 6 * 32 * linear, (per_sample, linear)
