"""`zerotrain launch --autotuning tune|run`: real experiments of `zerotrain train` on CPU ranks, ranked by the metrics
the engine writes (docs/autotuning.md). The search logic over many cases is in tests/unit/autotune_test.cc."""
import json
import subprocess

import pytest

TRAIN = ["--model", "llama-tiny", "--seq", "32", "--steps", "30", "--device", "cpu"]
BASE = {"gradient_accumulation_steps": 1, "optimizer": {"type": "AdamW", "params": {"lr": 1e-3}}}


def autotune(zerotrain_bin, tmp_path, config, mode="tune", launch=("--num_gpus", "1"), timeout=300, subcommand=False):
    (tmp_path / "cfg.json").write_text(json.dumps(config))
    zerotrain_bin = zerotrain_bin.resolve()
    start = ["autotune", *(["--run"] if mode == "run" else [])] if subcommand else ["launch", "--autotuning", mode]
    cmd = [str(zerotrain_bin), *start, *launch, "--no_local_rank", str(zerotrain_bin), "train", "--config", "cfg.json",
           *TRAIN]
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=timeout)


def test_listed_stages_and_micro_batches_are_measured_and_the_best_is_written(zerotrain_bin, tmp_path):
    config = dict(BASE, train_micro_batch_size_per_gpu=[1, 4], zero_optimization={"stage": [1, 3]},
                  autotuning={"enabled": True, "start_profile_step": 2, "end_profile_step": 3})
    proc = autotune(zerotrain_bin, tmp_path, config)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = tmp_path / "autotuning_results"
    names = ["z1_gas4_tmbspg1", "z1_gas1_tmbspg4", "z3_gas4_tmbspg1", "z3_gas1_tmbspg4"]
    metrics = {}
    for name in names:
        m = json.loads((results / name / "metrics.json").read_text())
        assert m["profiled_steps"] == 2 and m["train_batch_size"] == 4, m
        assert m["throughput"] > 0 and m["latency"] > 0
        assert abs(m["throughput"] - 4 / (m["latency"] / 1000)) < 1e-6 * m["throughput"]
        metrics[name] = m["throughput"]
        assert (tmp_path / "autotuning_exps" / f"{name}.json").exists()
        assert "train" in (results / name / "cmd.txt").read_text()
    info = json.loads((results / "profile_model_info" / "model_info.json").read_text())
    assert info["num_params"] > 0 and info["device"] == "cpu"
    best = max(metrics, key=metrics.get)
    optimal = json.loads((results / "ds_config_optimal.json").read_text())
    assert "autotuning" not in optimal
    assert optimal["zero_optimization"]["stage"] == int(best[1])
    assert optimal["train_micro_batch_size_per_gpu"] == int(best.split("tmbspg")[1])
    summary = (results / "summary.txt").read_text()
    assert f"| global | 4 | {metrics[best]:.6g} | {best} |" in summary, summary
    cmd = (results / "cmd_optimal.txt").read_text()
    assert "--autotuning" not in cmd and str(results / "ds_config_optimal.json") in cmd
    # The optimal command trains as it is.
    rerun = subprocess.run(["bash", "-c", cmd.replace("--steps 30", "--steps 4")], cwd=tmp_path, capture_output=True,
                           text=True, timeout=120)
    assert rerun.returncode == 0 and "done: 4 steps" in rerun.stdout, rerun.stdout + rerun.stderr


def test_the_search_finds_the_micro_batch_sizes_itself_up_to_the_configured_largest(zerotrain_bin, tmp_path):
    config = dict(BASE, zero_optimization={"stage": 2},
                  autotuning={"start_profile_step": 1, "end_profile_step": 2, "max_train_micro_batch_size_per_gpu": 4})
    proc = autotune(zerotrain_bin, tmp_path, config, subcommand=True)  # `zerotrain autotune` = launch --autotuning
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The configured smallest (1) runs, then the largest allowed (4), then the sizes from half of it up that divide
    # its batch (2 with accumulation 2; 3 would train 3 samples a step instead of 4).
    ran = sorted(p.name for p in (tmp_path / "autotuning_results").iterdir() if (p / "metrics.json").exists())
    assert ran == ["z2_gas1_tmbspg1", "z2_gas1_tmbspg4", "z2_gas2_tmbspg2"], proc.stdout


def test_run_mode_trains_with_the_optimal_config_on_two_ranks(zerotrain_bin, tmp_path):
    config = dict(BASE, train_micro_batch_size_per_gpu=[2], zero_optimization={"stage": [2]},
                  autotuning={"start_profile_step": 1, "end_profile_step": 2})
    proc = autotune(zerotrain_bin, tmp_path, config, mode="run", launch=("--launcher", "openmpi", "--num_gpus", "2"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "z2_gas1_tmbspg2 is the optimal setup" in proc.stdout
    assert "autotuning: training with" in proc.stdout
    assert "2 rank(s) on cpu, ZeRO stage 2" in proc.stdout and "done: 30 steps" in proc.stdout, proc.stdout


def test_experiments_that_cannot_run_are_listed_with_their_reason_and_no_optimum_is_claimed(zerotrain_bin, tmp_path):
    # Optimizer offload at stage 0 is a config error: the experiment is recorded, not started.
    config = dict(BASE, train_micro_batch_size_per_gpu=[1],
                  zero_optimization={"stage": [0], "offload_optimizer": {"device": "cpu"}})
    proc = autotune(zerotrain_bin, tmp_path, config)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    summary = (tmp_path / "autotuning_results" / "summary.txt").read_text()
    assert "| z0_gas1_tmbspg1 | - | - | config error:" in summary and "offload" in summary, summary
    assert "no experiment produced a metric" in proc.stdout
    assert not (tmp_path / "autotuning_results" / "ds_config_optimal.json").exists()


@pytest.mark.parametrize("args, config, expected", [
    (["--autotuning", "fast"], None, "--autotuning fast: use tune"),
    (["--autotuning", "tune"], None, "name no DeepSpeed config"),
    (["AUTOTUNE"], None, "name no DeepSpeed config"),
    (["--autotuning", "tune"], {"zero_optimization": {"stage": [2, 4]}}, "zero_optimization.stage: 4 cannot be autotuned"),
    (["--autotuning", "tune"], {"autotuning": {"metric": "speed"}}, "autotuning.metric"),
    (["--autotuning", "tune"], {"autotuning": {"mp_size": 2}}, "autotuning.mp_size: 2"),
])
def test_bad_autotuning_requests_are_errors_naming_the_flag_or_key(zerotrain_bin, tmp_path, args, config, expected):
    program = ["echo", "hi"]
    if config is not None:
        (tmp_path / "cfg.json").write_text(json.dumps(config))
        program = ["train.py", "--deepspeed", "cfg.json"]
    start = ["autotune"] if args == ["AUTOTUNE"] else ["launch", *args]
    proc = subprocess.run([str(zerotrain_bin.resolve()), *start, *program], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1 and expected in proc.stderr, proc.stdout + proc.stderr


def test_arg_mappings_carry_each_experiments_micro_batch_to_the_script(zerotrain_bin, tmp_path):
    # Hugging Face style: "auto" in the config, the script's --micro-batch (zerotrain train's flag that resolves
    # "auto") is the smallest size to tune from and receives each experiment's value.
    config = dict(BASE, train_micro_batch_size_per_gpu="auto", zero_optimization={"stage": 1},
                  autotuning={"start_profile_step": 1, "end_profile_step": 2, "max_train_micro_batch_size_per_gpu": 3,
                              "arg_mappings": {"train_micro_batch_size_per_gpu": "--micro-batch"}})
    (tmp_path / "cfg.json").write_text(json.dumps(config))
    binary = str(zerotrain_bin.resolve())
    proc = subprocess.run([binary, "launch", "--autotuning", "tune", "--num_gpus", "1", "--no_local_rank", binary,
                           "train", "--config", "cfg.json", "--micro-batch", "2", *TRAIN], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = tmp_path / "autotuning_results"
    ran = sorted(p.name for p in results.iterdir() if (p / "metrics.json").exists())
    assert ran == ["z1_gas1_tmbspg2", "z1_gas1_tmbspg3"], proc.stdout
    assert "--micro-batch 3" in (results / "z1_gas1_tmbspg3" / "cmd.txt").read_text()
    assert "batch 3 = 3 x 1 x 1" in (results / "z1_gas1_tmbspg3" / "stdout.log").read_text()


def test_with_overwrite_false_a_rerun_reuses_the_measured_experiments(zerotrain_bin, tmp_path):
    config = dict(BASE, train_micro_batch_size_per_gpu=[2], zero_optimization={"stage": [1]},
                  autotuning={"start_profile_step": 1, "end_profile_step": 2, "overwrite": False})
    first = autotune(zerotrain_bin, tmp_path, config)
    assert first.returncode == 0 and "reused" not in first.stdout, first.stdout + first.stderr
    metrics = (tmp_path / "autotuning_results" / "z1_gas1_tmbspg2" / "metrics.json").read_text()
    second = autotune(zerotrain_bin, tmp_path, config)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "z1_gas1_tmbspg2: throughput" in second.stdout and "(reused: autotuning.overwrite is false)" in second.stdout
    assert (tmp_path / "autotuning_results" / "z1_gas1_tmbspg2" / "metrics.json").read_text() == metrics
