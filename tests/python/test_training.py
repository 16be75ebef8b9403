"""Python modules and Hugging Face models trained by the C++ engine on several gloo ranks, against unsharded
torch training."""
import importlib.util
import json
import zipfile

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


def _wandb_records(path):
    """The records of a wandb run file (wandb's offline format: LevelDB's log format, 32 KiB blocks of records framed
    by a CRC, a little-endian length and a type, after a 7-byte ":W&B" header), each a Record proto."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", data[:7]
    pos, block, pending, records = 7, 32768, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        kind = data[pos + 6] if left >= 7 else 0
        if kind == 0:  # the block's zero padding
            pos += left
            continue
        length = int.from_bytes(data[pos + 4:pos + 6], "little")
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk  # FULL / FIRST start a record, MIDDLE / LAST extend it
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


needs_clients = pytest.mark.skipif(importlib.util.find_spec("wandb") is None or importlib.util.find_spec("comet_ml")
                                   is None, reason="wandb or comet_ml is not installed (scripts/bootstrap.sh installs them)")


@needs_clients
def test_wandb_and_comet_monitors_log_the_engine_events(launch, tmp_path, monkeypatch):
    # DeepSpeed's "wandb" and "comet" sections, their real clients offline: rank 0 starts one run each and logs
    # train_loss (rank 0's mean loss of the step, at the samples before it) and lr (at the samples after it) as
    # DeepSpeed's WandbMonitor / CometMonitor do; comet only every samples_log_interval samples per metric.
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("COMET_OFFLINE_DIRECTORY", str(tmp_path / "comet"))
    trained_file = tmp_path / "trained.json"
    rc, out = launch("monitor_worker.py", 2, trained_file)
    assert_passed(rc, out, 2 * 2)
    trained = json.loads(trained_file.read_text())
    tbs, losses, lrs = trained["train_batch_size"], trained["losses"], trained["lrs"]
    assert tbs == 8 and len(losses) == 4 and trained["global_samples"] == 4 * tbs

    runs = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1, runs  # rank 0's run only
    records = _wandb_records(runs[0])
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert (run.project, run.run_group, run.entity) == ("zt-monitor-test", "g1", "team1")
    logged = {}
    for r in records:
        if r.WhichOneof("record_type") == "history":
            for item in r.history.item:
                key = item.key or "/".join(item.nested_key)
                if not key.startswith("_"):
                    logged[(key, r.history.step.num)] = json.loads(item.value_json)
    assert {s for k, s in logged if k == "Train/Samples/train_loss"} == {0, tbs, 2 * tbs, 3 * tbs}, logged
    for k, loss in enumerate(losses):
        assert logged[("Train/Samples/train_loss", k * tbs)] == pytest.approx(loss, rel=1e-5)
        assert logged[("Train/Samples/lr", (k + 1) * tbs)] == pytest.approx(lrs[k], rel=1e-9)
    assert logged[("Train/Samples/custom", 4 * tbs)] == 1.5  # engine.monitor.write_events

    zips = list((tmp_path / "comet").glob("*.zip"))
    assert len(zips) == 1, zips
    with zipfile.ZipFile(zips[0]) as z:
        experiment = json.loads(z.read("experiment.json"))
        messages = [json.loads(line) for line in z.read("messages.json").decode().splitlines() if line.strip()]
    assert experiment["project_name"] == "zt-monitor-test"
    metrics = {(m["payload"]["metric"]["metricName"], m["payload"]["metric"]["step"]): m["payload"]["metric"]
               ["metricValue"] for m in messages if m.get("type") == "metric_msg"}
    others = {(m["payload"]["key"], m["payload"]["value"]) for m in messages if m.get("type") == "log_other"}
    assert ("Name", "monitored") in others, others  # comet.experiment_name
    # samples_log_interval = 2 steps: each metric at its first sample count, then once 16 more samples went by
    assert sorted(k for k in metrics if k[0].startswith("Train/Samples/") and k[0] != "Train/Samples/custom") == [
        ("Train/Samples/lr", tbs), ("Train/Samples/lr", 3 * tbs),
        ("Train/Samples/train_loss", 0), ("Train/Samples/train_loss", 2 * tbs)], metrics
    assert metrics[("Train/Samples/train_loss", 2 * tbs)] == pytest.approx(losses[2], rel=1e-5)
    assert metrics[("Train/Samples/custom", 4 * tbs)] == 1.5


@needs_clients
def test_a_monitor_that_fails_on_rank_0_stops_every_rank(launch, tmp_path, monkeypatch):
    # Only rank 0 starts the clients: when comet refuses its config there (an experiment_key it cannot use), the other
    # ranks must not wait for it in the engine's start-up collectives; every rank raises at initialize.
    monkeypatch.setenv("COMET_OFFLINE_DIRECTORY", str(tmp_path / "comet"))
    rc, out = launch("monitor_worker.py", 2, tmp_path / "unused.json", "bad_key", timeout=120)
    assert_passed(rc, out, 2)
    assert "COMET_EXPERIMENT_KEY is invalid" in out and "rank 0 could not start the comet monitor" in out, out[-4000:]
