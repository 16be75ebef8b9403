"""`zerotrain config check`: exit codes, the effective-config report, --json, and error output."""
import json

import pytest

EXAMPLES = ["zero1_config.json", "zero2_config.json", "zero3_config.json", "zero_offload_config.json",
            "advanced_zero3_config.json", "zero3_nvme_offload_config.json", "autotune_cpu.json"]


@pytest.mark.parametrize("name", EXAMPLES)
def test_examples_pass(run, examples, name):
    proc = run("config", "check", examples / name, "--world-size", 8, check_rc=0)
    assert f"{name}: valid" in proc.stdout


def test_report_shows_values_origins_and_batch(run, examples):
    out = run("config", "check", examples / "zero2_config.json", "--world-size", 4, check_rc=0).stdout
    assert "train_batch_size 64 = micro-batch 4 x gradient accumulation 4 x world size 4" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and len(line.split()) >= 3}
    assert lines["gradient_accumulation_steps"].split()[1:3] == ["4", "derived"]
    assert lines["zero_optimization.stage"].split()[1:3] == ["2", "file"]
    assert lines["zero_optimization.stage3_prefetch_bucket_size"].split()[1:3] == ["50000000", "default"]


def test_unsupported_features_are_listed(run, examples, tmp_path):
    # advanced_zero3_config.json (stage 3, optimizer and parameters offloaded to the CPU): all implemented
    out = run("config", "check", examples / "advanced_zero3_config.json", check_rc=0).stdout
    assert "not supported yet" not in out
    # the optimizer on NVMe (zero3_nvme_offload_config.json): implemented
    out = run("config", "check", examples / "zero3_nvme_offload_config.json", check_rc=0).stdout
    assert "not supported yet" not in out
    cfg = json.loads((examples / "advanced_zero3_config.json").read_text())
    cfg["zero_optimization"]["offload_param"] = {"device": "nvme", "nvme_path": "/local_nvme"}
    cfg["zero_optimization"]["offload_optimizer"] = {"device": "nvme", "nvme_path": "/local_nvme"}
    (tmp_path / "nvme.json").write_text(json.dumps(cfg))
    out = run("config", "check", tmp_path / "nvme.json", check_rc=0).stdout
    assert "not supported yet" not in out  # ZeRO-Infinity on NVMe: implemented
    cfg["sparse_attention"] = {"mode": "fixed"}
    (tmp_path / "sparse.json").write_text(json.dumps(cfg))
    out = run("config", "check", tmp_path / "sparse.json", check_rc=0).stdout
    assert "not supported yet" in out
    assert "sparse attention" in out
    assert "ZeRO stage 3" not in out  # implemented


def test_json_output_is_the_effective_config(run, examples):
    proc = run("config", "check", examples / "zero1_config.json", "--world-size", 2, "--json", check_rc=0)
    cfg = json.loads(proc.stdout)
    assert cfg["train_batch_size"] == 64
    assert cfg["gradient_accumulation_steps"] == 8
    assert cfg["zero_optimization"]["stage"] == 1
    assert cfg["zero_optimization"]["overlap_comm"] is False
    assert cfg["optimizer"]["params"]["lr"] == 3e-4
    assert cfg["bf16"]["enabled"] is True


def test_auto_values_resolved_from_flags(run, tmp_path):
    path = tmp_path / "hf.json"
    path.write_text(json.dumps({"train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto",
                                "zero_optimization": {"stage": 2, "reduce_bucket_size": "auto"}}))
    cfg = json.loads(run("config", "check", path, "--world-size", 2, "--micro-batch", 3, "--hidden-size", 100,
                         "--json", check_rc=0).stdout)
    assert cfg["train_micro_batch_size_per_gpu"] == 3
    assert cfg["train_batch_size"] == 6
    assert cfg["zero_optimization"]["reduce_bucket_size"] == 10000


def test_invalid_config_prints_every_error_and_exits_1(run, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"train_batch_size": 8,\n "zero_optimization": {"stage": 7, "overlap_com": true},\n'
                    ' "fp16": {"enabled": true}, "bf16": {"enabled": true}}')
    proc = run("config", "check", path, check_rc=1)
    assert proc.stdout == ""
    err = proc.stderr
    assert "invalid config (2 errors)" in err
    assert "zero_optimization.stage (line 2, column 33): 7 is out of range; allowed: an integer from 0 to 3" in err
    assert 'did you mean "overlap_comm"?' in err


def test_cross_key_errors(run, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"train_batch_size": 8, "fp16": {"enabled": True}, "bf16": {"enabled": True}}))
    assert "fp16 and bf16 are both enabled" in run("config", "check", path, check_rc=1).stderr


def test_invalid_json_gives_line_and_column(run, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "train_batch_size": 8\n  "steps_per_print": 1\n}')
    err = run("config", "check", path, check_rc=1).stderr
    assert f"{path}:3:3: invalid JSON: expected ',' or '}}'" in err


def test_batch_inconsistency(run, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"train_batch_size": 10, "train_micro_batch_size_per_gpu": 4,
                                "gradient_accumulation_steps": 1}))
    err = run("config", "check", path, "--world-size", 2, check_rc=1).stderr
    assert "train_batch_size 10 != train_micro_batch_size_per_gpu 4 * gradient_accumulation_steps 1 * world_size 2" in err


def test_missing_file(run, tmp_path):
    err = run("config", "check", tmp_path / "nope.json", check_rc=1).stderr
    assert "cannot open the config file" in err


def test_bad_world_size_is_a_usage_error(run, examples):
    proc = run("config", "check", examples / "zero1_config.json", "--world-size", 0)
    assert proc.returncode != 0
    assert "world-size" in proc.stderr
