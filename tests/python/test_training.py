"""Python modules and Hugging Face models trained by the C++ engine on several gloo ranks, against unsharded
torch training."""
import importlib.util

import pytest

needs_transformers = pytest.mark.skipif(importlib.util.find_spec("transformers") is None,
                                        reason="transformers is not installed")


def assert_passed(rc, out, expected):
    # Ranks share the output stream, so lines may interleave: count the verdicts, not the lines.
    assert rc == 0 and "FAIL" not in out and out.count("PASS ") >= expected, out[-6000:]


@pytest.mark.parametrize("ranks", [1, 2])
def test_python_module_every_stage_matches_unsharded_training(launch, ranks):
    # Stages 0-3: losses and final weights vs torch.optim.AdamW on the whole batch (tied weights, a frozen layer,
    # a buffer, gradient accumulation), and a bit-identical resume from a checkpoint.
    rc, out = launch("parity_worker.py", ranks, "--stages", "0,1,2,3")
    assert_passed(rc, out, 4 * 4 * ranks)


def test_python_module_stages_2_and_3_on_three_ranks(launch):
    # Three ranks: buckets that do not divide evenly.
    rc, out = launch("parity_worker.py", 3, "--stages", "2,3", "--gas", "1")
    assert_passed(rc, out, 2 * 4 * 3)


@needs_transformers
@pytest.mark.parametrize("model,stage,checkpointing", [
    ("llama", 3, "none"),
    ("llama", 3, "reentrant"),
    ("llama", 3, "non_reentrant"),
    ("gpt2", 3, "none"),
    ("gpt2", 1, "reentrant"),
    ("llama", 0, "none"),
    ("gpt2", 2, "none"),
])
def test_hugging_face_model_matches_unsharded_training(launch, model, stage, checkpointing):
    rc, out = launch("hf_worker.py", 2, "--model", model, "--stage", stage, "--checkpointing", checkpointing)
    assert_passed(rc, out, 2 * (3 if stage == 3 else 2))


@needs_transformers
@pytest.mark.parametrize("model,stage", [("llama", 3), ("gpt2", 2)])
def test_hugging_face_model_bf16_loss_falls(launch, model, stage):
    rc, out = launch("hf_worker.py", 2, "--model", model, "--stage", stage, "--dtype", "bf16")
    assert_passed(rc, out, 2 * (2 if stage == 3 else 1))


@needs_transformers
@pytest.mark.parametrize("stage,flags", [(3, []), (2, ["--bf16"]), (2, ["--offload"]), (3, ["--offload"])])
def test_hugging_face_trainer_with_auto_config(launch, stage, flags):
    # transformers.Trainer through zerotrain.hf.Trainer: "auto" values, loss falls, save_model -> from_pretrained,
    # resume_from_checkpoint reproduces the uninterrupted run; also with the optimizer offloaded to the CPU.
    rc, out = launch("trainer_worker.py", 2, "--stage", stage, *flags)
    assert_passed(rc, out, 2 * 4 + 2)


@pytest.mark.parametrize("flags", [[], ["--capture"], ["--capture", "--destroy"]])
def test_no_gloo_thread_outlives_the_group_at_exit(launch, flags):
    # A gloo worker thread alive at interpreter finalization aborted ranks at exit (CI: "terminate called without
    # an active exception"); a module holding the default group as a default argument kept it alive.
    rc, out = launch("exit_worker.py", 2, *flags)
    assert_passed(rc, out, 2)
    assert "Warning" not in out, out[-3000:]  # the exit handler's scan of modules stays quiet


@pytest.mark.parametrize("kind,stage", [("object", 2), ("function", 3)])
def test_client_lr_scheduler_matches_torch_and_resumes(launch, kind, stage):
    # deepspeed.initialize(lr_scheduler=...): an object on the script's optimizer, or a function of the optimizer.
    rc, out = launch("scheduler_worker.py", 2, "--kind", kind, "--stage", stage)
    assert_passed(rc, out, 2 * 7)


@pytest.mark.parametrize("kind,stage", [("adamw", 2), ("adamw", 3), ("adam_l2", 1), ("sgd", 0)])
def test_param_groups_with_different_weight_decay_match_torch(launch, kind, stage):
    # The decay / no-decay split of DeepSpeed scripts: a client optimizer's groups or model_parameters groups.
    rc, out = launch("groups_worker.py", 2, "--kind", kind, "--stage", stage)
    assert_passed(rc, out, 2 * 3)


@pytest.mark.parametrize("kind,stage,flags", [("adamw", 3, ("--lr_mult", 3)),
                                              ("adamw", 2, ("--lr_mult", 0.25, "--scheduler")),
                                              ("sgd", 1, ("--lr_mult", 4)), ("adam_l2", 0, ("--lr_mult", 0.5))])
def test_param_groups_with_different_lr_match_torch(launch, kind, stage, flags):
    # Per-group learning rates (layer-wise lr, a faster head): each parameter trains at its group's lr, under a
    # client scheduler too; losses and weights equal torch's with the same groups.
    rc, out = launch("groups_worker.py", 2, "--kind", kind, "--stage", stage, *flags)
    assert_passed(rc, out, 2 * 3)


@needs_transformers
def test_hugging_face_trainer_without_optimizer_or_scheduler_sections(launch):
    # As Transformers' DeepSpeed integration: the Trainer's own AdamW (decay / no-decay groups) and linear schedule;
    # the losses equal transformers.Trainer's own run (DDP), the resume repeats the uninterrupted run.
    rc, out = launch("trainer_worker.py", 2, "--stage", 3, "--no_sections")
    assert_passed(rc, out, 2 * 4 + 2)


def test_wall_clock_breakdown_and_comms_logger(launch):
    # DeepSpeed's engine timers and deepspeed.comm's logger: get_wall_clock_timers, log_summary with stragglers.
    rc, out = launch("logging_worker.py", 2)
    assert_passed(rc, out, 2 * 10)
    assert out.count("[Rank 0] time (ms) | fwd_microstep: ") == 6, out  # every micro-step, rank 0 only
    assert out.count("[Rank 0] time (ms) | fwd: ") == 3, out             # every optimizer step
    assert out.count("Comm. Op") == 3, out  # rank 0: the table, the straggler table, the empty table after reset


def test_zero_quantized_weights_train_quantized_but_users_read_exact_weights(launch):
    # ZeRO++ qwZ on 2 gloo ranks: the 16-bit save and GatheredParameters give the exact weights, not int8 ones.
    rc, out = launch("qwz_worker.py", 2)
    assert_passed(rc, out, 2 * 4)
