"""`zerotrain estimate`: JSON fields, DeepSpeed's formulas, the seed's select_zero_stage, bad input."""
import json
import math

import pytest


def estimate_json(run, *args):
    return json.loads(run("estimate", *args, "--json", check_rc=0).stdout)


def seed_select_zero_stage(params_b, gpu_gb, num_gpus):
    """The seed's function, verbatim in behaviour (shared/seeds/000_*.txt)."""
    model = params_b * 1e9 * 2 / 1e9
    optim = params_b * 1e9 * 12 / 1e9
    z0 = model + optim + model
    z1 = model + optim / num_gpus + model
    z2 = model + optim / num_gpus + model / num_gpus
    z3 = (model + optim + model) / num_gpus
    if z0 < gpu_gb * 0.7:
        return 0
    if z1 < gpu_gb * 0.7:
        return 1
    if z2 < gpu_gb * 0.7:
        return 2
    return 3


@pytest.mark.parametrize("params,gpu_gb,gpus", [(1, 80, 8), (3, 80, 8), (7, 80, 8), (13, 80, 8), (30, 80, 8),
                                                (70, 80, 8), (175, 80, 64), (7, 24, 1), (2, 40, 2)])
def test_seed_decision_tree(run, params, gpu_gb, gpus):
    out = estimate_json(run, "--params", f"{params}e9", "--gpu-memory-gb", gpu_gb, "--gpus-per-node", gpus)
    rec = out["recommendation"]
    assert rec["stage"] == seed_select_zero_stage(params, gpu_gb, gpus)


def test_model_states_match_sixteen_bytes_per_param(run):
    out = estimate_json(run, "--params", "8e9", "--gpus-per-node", 8)
    by = {(s["stage"], s["offload_optimizer"], s["offload_param"]): s for s in out["stages"]}
    p, n = 8e9, 8
    assert by[(0, "none", "none")]["model_states_gpu_bytes"] == pytest.approx(16 * p, rel=1e-9)
    assert by[(1, "none", "none")]["model_states_gpu_bytes"] == pytest.approx(4 * p + 12 * p / n, rel=1e-9)
    assert by[(2, "none", "none")]["model_states_gpu_bytes"] == pytest.approx(2 * p + 14 * p / n, rel=1e-9)
    assert by[(3, "none", "none")]["model_states_gpu_bytes"] == pytest.approx(16 * p / n, rel=1e-9)
    for s in out["stages"]:
        assert "model_states_cpu_bytes" in s


def test_deepspeed_zero3_formula(run):
    # DeepSpeed's estimate_zero3_model_states_mem_needs, no offload: gpu = largest_layer*4 + 18*params/total_gpus.
    out = estimate_json(run, "--model", "llama-3-8b", "--gpus-per-node", 8)
    row = next(s for s in out["stages"] if s["stage"] == 3 and s["offload_optimizer"] == "none")
    expected = 4 * out["largest_layer_params"] + 18 * out["num_params"] / 8
    assert row["deepspeed"]["gpu_bytes"] == pytest.approx(expected, rel=1e-9)


def test_shape_gives_activations_and_checkpointing_reduces_them(run):
    args = ["--layers", 22, "--hidden", 2048, "--heads", 32, "--kv-heads", 4, "--ffn", 5632, "--vocab", 32000,
            "--seq", 2048, "--micro-batch", 4]
    full = estimate_json(run, *args)
    ckpt = estimate_json(run, *args, "--activation-checkpointing")
    assert full["num_params"] == 1_100_048_384
    a_full = full["stages"][0]["activations_gpu_bytes"]
    a_ckpt = ckpt["stages"][0]["activations_gpu_bytes"]
    assert 0 < a_ckpt < a_full


@pytest.mark.parametrize("args,needle", [(["--params", "-5"], "--params"), (["--params", "abc"], "--params"),
                                         (["--params", "1e9", "--gpus-per-node", "0"], "--gpus-per-node"),
                                         (["--model", "gpt5"], "--model"),
                                         (["--layers", "2"], "--hidden")])
def test_bad_input_names_the_argument(run, args, needle):
    proc = run("estimate", *args)
    assert proc.returncode == 1, proc.stderr
    assert needle in proc.stderr
