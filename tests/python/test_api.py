"""zerotrain.initialize in this process (one rank): the DeepSpeed API surface and its errors."""
import argparse
import importlib.util
import copy
import json
import warnings

import pytest
import torch

import zerotrain

ADAMW = {"type": "AdamW", "params": {"lr": 1e-2, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0}}


def tiny():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


def base_config(**extra):
    cfg = {"train_batch_size": 2, "gradient_clipping": 0.0, "optimizer": ADAMW}
    cfg.update(extra)
    return cfg


def test_config_as_path_json_text_dict_and_args(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps(base_config()))
    for kwargs in ({"config": str(path)}, {"config": json.dumps(base_config())}, {"config": base_config()},
                   {"config_params": base_config()}):
        engine, _, _, _ = zerotrain.initialize(model=tiny(), **kwargs)
        assert engine.train_batch_size() == 2
    parser = zerotrain.add_config_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--deepspeed", "--deepspeed_config", str(path)])
    assert args.deepspeed is True
    engine, _, _, _ = zerotrain.initialize(args=args, model=tiny())
    assert engine.train_micro_batch_size_per_gpu() == 2


def test_bad_configs_raise_with_the_message(tmp_path):
    with pytest.raises(zerotrain.ConfigError, match=r"zero_optimization\.stage.*7"):
        zerotrain.initialize(model=tiny(), config=base_config(zero_optimization={"stage": 7}))
    with pytest.raises(zerotrain.ConfigError, match="train_batch_size"):
        zerotrain.initialize(model=tiny(), config=base_config(train_batch_size=0))
    with pytest.raises(ValueError, match="not valid JSON"):
        zerotrain.initialize(model=tiny(), config='{"train_batch_size": 2,')
    with pytest.raises(ValueError, match="cannot be read"):
        zerotrain.initialize(model=tiny(), config=str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="no DeepSpeed config"):
        zerotrain.initialize(model=tiny())
    # ConfigError is a ValueError, as DeepSpeed users catch it.
    assert issubclass(zerotrain.ConfigError, ValueError)


def test_client_optimizer_becomes_the_engine_optimizer():
    model = tiny()
    reference = copy.deepcopy(model)
    ref_opt = torch.optim.AdamW(reference.parameters(), lr=1e-2, weight_decay=0.05)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.05)
    cfg = base_config()
    del cfg["optimizer"]
    engine, optimizer, _, scheduler = zerotrain.initialize(model=model, optimizer=opt, config=cfg)
    assert engine.config["optimizer"]["type"] == "AdamW"
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-2)
    assert scheduler is None
    x, y = torch.randn(2, 4), torch.randn(2, 2)
    for _ in range(3):
        ref_opt.zero_grad()
        torch.nn.functional.mse_loss(reference(x), y).backward()
        ref_opt.step()
        loss = torch.nn.functional.mse_loss(engine(x), y)
        engine.backward(loss)
        engine.step()
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_model_parameter_groups_set_or_refuse_hyperparameters():
    # DeepSpeed: a param group's hyperparameters replace the config optimizer's. Groups that agree apply; weight_decay
    # may differ (per parameter, tests/python/workers/groups_worker.py); other keys that differ are an error.
    model = tiny()
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    cfg = base_config()
    cfg["optimizer"]["params"]["weight_decay"] = 0.1
    engine, _, _, _ = zerotrain.initialize(model=model, config=cfg, model_parameters=[
        {"params": weights, "weight_decay": 0.0}, {"params": biases, "weight_decay": 0.0}])
    assert engine.config["optimizer"]["params"]["weight_decay"] == 0.0
    lamb = base_config()
    lamb["optimizer"] = {"type": "Lamb", "params": {"lr": 1e-3, "weight_decay": 0.01}}
    m2 = tiny()
    w2 = [p for n, p in m2.named_parameters() if n.endswith("weight")]
    b2 = [p for n, p in m2.named_parameters() if n.endswith("bias")]
    with pytest.raises(ValueError, match=r"per-parameter weight_decay \(param groups\): not supported for the Lamb"):
        zerotrain.initialize(model=m2, config=lamb, model_parameters=[
            {"params": w2, "weight_decay": 0.01}, {"params": b2, "weight_decay": 0.0}])
    # lr may differ: a group without one trains at the config's (training: groups_worker.py)
    m3 = tiny()
    w3 = [p for n, p in m3.named_parameters() if n.endswith("weight")]
    b3 = [p for n, p in m3.named_parameters() if n.endswith("bias")]
    engine, _, _, _ = zerotrain.initialize(model=m3, config=base_config(), model_parameters=[
        {"params": w3, "lr": 0.5}, {"params": b3}])
    assert engine.get_lr() == pytest.approx([0.5, 1e-2])
    with pytest.raises(ValueError, match=r"model_parameters\[1\] has eps=\(not set\)"):
        zerotrain.initialize(model=tiny(), config=base_config(), model_parameters=[
            {"params": weights, "eps": 1e-6}, {"params": biases}])
    with pytest.raises(ValueError, match=r"a param group has lr=0.0; allowed: lr > 0"):
        m4 = tiny()
        zerotrain.initialize(model=m4, config=base_config(), model_parameters=[
            {"params": [m4[0].weight], "lr": 0.0}, {"params": [m4[0].bias]}])
    with pytest.raises(ValueError, match=r"groups set \['foo'\]; allowed keys"):
        zerotrain.initialize(model=tiny(), config=base_config(), model_parameters=[{"params": weights, "foo": 1}])


def test_per_group_learning_rates_follow_deepspeeds_schedules():
    # DeepSpeed's WarmupLR (and WarmupDecayLR, OneCycle, LRRangeTest) give every group one lr: the groups' values
    # are not used, with a warning; WarmupCosineLR scales each group's own.
    def groups(model):
        return [{"params": [model[0].weight], "lr": 0.1}, {"params": [model[0].bias], "lr": 0.4}]

    for schedule, want in [({"type": "WarmupLR", "params": {"warmup_min_lr": 0.02, "warmup_max_lr": 0.02,
                                                           "warmup_num_steps": 1}}, 1.0),
                           ({"type": "WarmupCosineLR", "params": {"total_num_steps": 10, "warmup_num_steps": 1,
                                                                  "warmup_min_ratio": 0.5}}, 4.0)]:
        cfg = copy.deepcopy(base_config(scheduler=schedule))
        cfg["optimizer"]["params"]["lr"] = 0.1
        model = tiny()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            engine, _, _, _ = zerotrain.initialize(model=model, config=cfg, model_parameters=groups(model))
        warned = any("gives every group the same learning rate" in str(w.message) for w in caught)
        assert warned == (schedule["type"] == "WarmupLR"), [str(w.message) for w in caught]
        engine.backward(torch.nn.functional.mse_loss(engine(torch.randn(2, 4)), torch.randn(2, 2)))
        engine.step()
        lrs = engine.get_lr()
        assert lrs[0] > 0 and lrs[1] == pytest.approx(want * lrs[0]), (schedule["type"], lrs)
        shown = engine.optimizer.param_groups  # one per group, as DeepSpeed's optimizer
        assert [g["lr"] for g in shown] == pytest.approx(lrs) and [len(g["params"]) for g in shown] == [1, 1]
    # A client scheduler keeps the groups' ratios or is an error naming the group.
    model = tiny()
    cfg = base_config()
    del cfg["optimizer"]
    opt = torch.optim.SGD(groups(model), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, [lambda s: 1.0, lambda s: 0.5 ** s])  # the second group decays
    engine, _, _, _ = zerotrain.initialize(model=model, optimizer=opt, config=cfg, lr_scheduler=sched)
    x, y = torch.randn(2, 4), torch.randn(2, 2)
    engine.backward(torch.nn.functional.mse_loss(engine(x), y))
    with pytest.raises(ValueError, match=r"param_groups\[1\] has lr 0.2, but zerotrain keeps each group's learning "
                                         r"rate at its ratio"):
        engine.step()


def test_client_optimizer_errors():
    model = tiny()
    with pytest.raises(ValueError, match="both an optimizer object and an \"optimizer\" section"):
        zerotrain.initialize(model=model, optimizer=torch.optim.AdamW(model.parameters()), config=base_config())
    cfg = base_config()
    del cfg["optimizer"]
    with pytest.raises(ValueError, match="RMSprop is not one zerotrain runs"):
        zerotrain.initialize(model=model, optimizer=torch.optim.RMSprop(model.parameters()), config=cfg)
    with pytest.raises(ValueError, match="amsgrad=True is not supported"):
        zerotrain.initialize(model=model, optimizer=torch.optim.Adam(model.parameters(), amsgrad=True), config=cfg)
    groups = [{"params": [model[0].weight], "eps": 1e-6}, {"params": [model[0].bias], "eps": 1e-7}]
    with pytest.raises(ValueError, match=r"param_groups\[1\] has eps=1e-07 but param_groups\[0\] has 1e-06"):
        zerotrain.initialize(model=model, optimizer=torch.optim.AdamW(groups), config=cfg)
    with pytest.raises(ValueError, match="lr_scheduler must be a scheduler object"):
        zerotrain.initialize(model=model, config=base_config(), lr_scheduler=object())
    with pytest.raises(ValueError, match="lr_scheduler function must return a scheduler"):
        zerotrain.initialize(model=model, config=base_config(), lr_scheduler=lambda opt: 3)
    other = torch.optim.AdamW(model.parameters())
    with pytest.raises(ValueError, match="built on another optimizer"):
        zerotrain.initialize(model=model, optimizer=torch.optim.AdamW(model.parameters()), config=cfg,
                             lr_scheduler=torch.optim.lr_scheduler.StepLR(other, 2))
    with pytest.raises(TypeError, match="must be a torch.nn.Module"):
        zerotrain.initialize(model=object(), config=base_config())


def test_engine_surface_schedule_dataloader_and_16bit_save(tmp_path):
    data = torch.utils.data.TensorDataset(torch.randn(12, 4), torch.randn(12, 2))
    cfg = base_config(train_micro_batch_size_per_gpu=2, gradient_accumulation_steps=1,
                      scheduler={"type": "WarmupLR", "params": {"warmup_min_lr": 0, "warmup_max_lr": 1e-2,
                                                                "warmup_num_steps": 4, "warmup_type": "linear"}},
                      bf16={"enabled": True})
    engine, optimizer, loader, scheduler = zerotrain.initialize(model=tiny(), config=cfg, training_data=data)
    assert engine.bfloat16_enabled() and not engine.fp16_enabled()
    assert engine.zero_optimization_stage() == 0
    assert len(loader) == 6 and engine.device == torch.device("cpu")
    # DeepSpeed's engine carries what initialize returned
    assert engine.optimizer is optimizer and engine.lr_scheduler is scheduler and engine.training_dataloader is loader
    assert engine.gradient_clipping() == 0.0 and not engine.was_step_applied()
    lrs = []
    for x, y in loader:
        lrs.append(scheduler.get_last_lr()[0])
        loss = torch.nn.functional.mse_loss(engine(x.bfloat16()).float(), y)
        engine.backward(loss)
        assert engine.is_gradient_accumulation_boundary()
        engine.step()
        assert engine.was_step_applied()
    # DeepSpeed's WarmupLR: index -1 then 0 give warmup_min_lr, then linear to warmup_max_lr at index 4.
    assert lrs == pytest.approx([0, 0, 2.5e-3, 5e-3, 7.5e-3, 1e-2])
    assert engine.global_steps == 6 and engine.global_samples == 12
    assert engine.get_global_grad_norm() > 0
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-2)
    assert engine.save_16bit_model(str(tmp_path), "model.safetensors")
    assert engine.save_fp16_model(str(tmp_path))  # DeepSpeed's older name
    state = torch.load(tmp_path / "pytorch_model.bin", weights_only=True)
    assert set(state) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert state["0.weight"].dtype == torch.bfloat16
    torch.testing.assert_close(state["2.bias"], engine.module[2].bias.detach())


def test_was_step_applied_and_manual_boundaries():
    engine, _, _, _ = zerotrain.initialize(model=tiny(), config=base_config(train_batch_size=4,
                                                                             gradient_accumulation_steps=2))
    applied = []
    for _ in range(4):
        engine.backward(torch.nn.functional.mse_loss(engine(torch.randn(2, 4)), torch.randn(2, 2)))
        engine.step()
        applied.append(engine.was_step_applied())
    assert applied == [False, True, False, True]
    # DeepSpeed's manual boundary (RL trainers set it per micro-batch): three micro-steps, one optimizer step
    steps = engine.global_steps
    for i in range(3):
        engine.set_gradient_accumulation_boundary(i == 2)
        engine.backward(torch.nn.functional.mse_loss(engine(torch.randn(2, 4)), torch.randn(2, 2)))
        engine.step()
        assert engine.was_step_applied() == (i == 2)
    assert engine.global_steps == steps + 1
    with pytest.raises(TypeError, match="is_boundary must be a bool or None"):
        engine.set_gradient_accumulation_boundary(1)
    engine.set_gradient_accumulation_boundary(None)


def test_stage3_gathered_parameters_modifier_and_save_gate(tmp_path):
    cfg = base_config(zero_optimization={"stage": 3, "stage3_param_persistence_threshold": 0})
    engine, _, _, _ = zerotrain.initialize(model=tiny(), config=cfg)
    assert not engine.save_16bit_model(str(tmp_path))  # stage3_gather_16bit_weights_on_model_save is off
    with zerotrain.zero.GatheredParameters(engine, modifier_rank=0):
        with torch.no_grad():
            engine.module[2].bias.fill_(0.25)
    x = torch.zeros(1, 4)
    with torch.no_grad():
        out = engine(x)
    # relu(bias0) @ W2.T + 0.25: check the new bias took effect through the partitioned storage.
    with zerotrain.zero.GatheredParameters(engine):
        expected = torch.relu(engine.module[0].bias) @ engine.module[2].weight.T + 0.25
    torch.testing.assert_close(out[0], expected)
    with pytest.raises(TypeError, match="pass the zerotrain engine"):
        zerotrain.zero.GatheredParameters([engine.module[0].weight])


def test_backward_and_step_argument_errors():
    engine, _, _, _ = zerotrain.initialize(model=tiny(), config=base_config())
    loss = engine(torch.randn(2, 4)).sum()
    with pytest.raises(ValueError, match="retain_graph=True is not supported"):
        engine.backward(loss, retain_graph=True)
    with pytest.raises(RuntimeError, match="loss must be a scalar"):
        engine.backward(engine(torch.randn(2, 4)))
    with pytest.raises(ValueError, match="client_state must be JSON-serializable"):
        engine.save_checkpoint("/nonexistent", client_state={"x": object()})


def test_engine_host_clock_moves_with_engine_work_only():
    engine, _, _, _ = zerotrain.initialize(model=tiny(), config=base_config(zero_optimization={"stage": 3}))
    x, y = torch.randn(2, 4), torch.randn(2, 2)

    def step():
        loss = torch.nn.functional.mse_loss(engine(x), y)
        engine.backward(loss)
        engine.step()

    before = zerotrain.engine_host_cpu_seconds()
    step()
    assert zerotrain.engine_host_cpu_seconds() == before, "accounting is off by default"
    zerotrain.set_engine_host_accounting(True)
    before = zerotrain.engine_host_cpu_seconds()
    step()
    spent = zerotrain.engine_host_cpu_seconds() - before
    assert spent > 0
    # user code between engine calls is not the engine's
    before = zerotrain.engine_host_cpu_seconds()
    torch.randn(512, 512) @ torch.randn(512, 512)
    assert zerotrain.engine_host_cpu_seconds() == before
    zerotrain.set_engine_host_accounting(False)


class _Attn(torch.nn.Module):
    def forward(self, x):  # two batched products without parameters: counted in this module through its hooks
        return torch.bmm(x, x.transpose(1, 2)) @ x


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj, self.attn, self.out = torch.nn.Linear(8, 8), _Attn(), torch.nn.Linear(8, 1)

    def forward(self, x):
        return self.out(self.attn(self.proj(x)))


@pytest.mark.parametrize("stage", [0, 3])
def test_flops_profiler_counts_python_modules(tmp_path, stage):
    out = tmp_path / "profile.txt"
    cfg = base_config(zero_optimization={"stage": stage},
                      flops_profiler={"enabled": True, "profile_step": 1, "output_file": str(out)})
    engine, _, _, _ = zerotrain.initialize(model=_Net(), config=cfg)
    x, y = torch.randn(2, 5, 8), torch.randn(2, 5, 1)
    for step in range(3):
        loss = torch.nn.functional.mse_loss(engine(x), y)
        engine.backward(loss)
        engine.step()
        if step == 0:
            assert engine._engine.flops_profile_macs() == 0 and not out.exists()
    # proj 10 x 8 x 8, attn 2 x 5 x 8 x 5 + 2 x 5 x 5 x 8, out 10 x 8 x 1
    assert engine._engine.flops_profile_macs() == 640 + 800 + 80
    assert engine._engine.flops_profile_macs("attn") == 800
    assert engine._engine.flops_profile_macs("out") == 80
    text = out.read_text()
    assert "Profile Summary at step 1:" in text, text
    assert "depth 0:\n    params      - {'_Net': '81 '}" not in text  # params are printed stripped
    assert "depth 0:\n    params      - {'_Net': '81'}" in text, text
    assert "(attn): _Attn(" in text and "(proj): Linear(" in text, text


def test_monitor_without_its_client_package_names_the_key(monkeypatch):
    # "wandb": {"enabled": true} where the wandb package is missing: every rank fails alike at initialize (no rank
    # left waiting in a collective), naming the key and the fix. Ranks other than 0 start no client (DeepSpeed logs
    # from rank 0 only) but still hand the engine a sink.
    import sys
    from zerotrain.monitor import start_clients

    assert start_clients({"wandb": {"enabled": False}, "comet": {}}, rank=0, device="cpu") is None
    if importlib.util.find_spec("wandb") is not None:
        other = start_clients({"wandb": {"enabled": True}}, rank=1, device="cpu")
        assert other is not None and other._monitors == []
        other.write_events([("Train/Samples/lr", 0.1, 8)])  # nothing to log to, nothing raised
    for module, section in (("wandb", "wandb"), ("comet_ml", "comet")):
        monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
        for rank in (0, 1):
            with pytest.raises(ImportError, match=rf"{section}.enabled = true: the {module} package is not installed"):
                start_clients({section: {"enabled": True}}, rank=rank, device="cpu")
