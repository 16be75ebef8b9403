"""Hugging Face Transformers' Trainer on zerotrain's engine.

    from zerotrain.hf import Trainer          # was: from transformers import Trainer
    trainer = Trainer(model=model, args=TrainingArguments(...), train_dataset=ds,
                      zerotrain_config="ds_config.json")   # was: TrainingArguments(deepspeed="ds_config.json")
    trainer.train()

The DeepSpeed config may use "auto" values as with Transformers' DeepSpeed integration; they are filled from the
TrainingArguments (batch size, gradient accumulation, learning rate, Adam betas and epsilon, weight decay, gradient
clipping, bf16/fp16, warmup and total steps) and the model config (hidden_size for bucket sizes). The engine runs
the optimizer and schedule of the config; as with Transformers' DeepSpeed integration, a config without an
"optimizer" section gets the Trainer's AdamW (weight decay on its decay groups only) and one without a "scheduler"
section the Trainer's schedule (lr_scheduler_type, warmup). Do not set TrainingArguments.deepspeed: Transformers
would look for the deepspeed package.

What changes inside the Trainer: the engine does backward, gradient reduction, clipping and the optimizer step in
training_step (Accelerate does not wrap the model in DDP); checkpoints hold the model's weights (save_pretrained
format, gathered at ZeRO stage 3) plus the engine's training state, and resume_from_checkpoint restores the latter.
"""
import json
import os

import torch

from .config import config_to_dict
from .engine import ZeroTrainEngine, lr_holder
from .zero import GatheredParameters

try:
    import transformers
except ImportError as e:  # pragma: no cover - the module is only useful with transformers
    raise ImportError("zerotrain.hf needs the transformers package (pip install transformers)") from e

_ENGINE_TAG = "zerotrain"
_TRAINER_ADAMW = {"adamw_torch", "adamw_torch_fused", "adamw_hf"}  # TrainingArguments.optim values run as AdamW


def _fill_auto(config, args, model, num_training_steps):
    """Replaces the "auto" values that Transformers' DeepSpeed integration fills, from args and the model."""
    def auto(section, key, value):
        if section.get(key) == "auto":
            section[key] = value

    world = max(1, args.world_size)
    auto(config, "train_micro_batch_size_per_gpu", args.per_device_train_batch_size)
    auto(config, "gradient_accumulation_steps", args.gradient_accumulation_steps)
    auto(config, "train_batch_size", args.per_device_train_batch_size * args.gradient_accumulation_steps * world)
    auto(config, "gradient_clipping", args.max_grad_norm)
    for name, flag in (("bf16", args.bf16), ("fp16", args.fp16)):
        if isinstance(config.get(name), dict):
            auto(config[name], "enabled", bool(flag))
    opt = config.get("optimizer", {}).get("params", {})
    auto(opt, "lr", args.learning_rate)
    auto(opt, "betas", [args.adam_beta1, args.adam_beta2])
    auto(opt, "eps", args.adam_epsilon)
    auto(opt, "weight_decay", args.weight_decay)
    sched = config.get("scheduler", {}).get("params", {})
    warmup = args.get_warmup_steps(num_training_steps)
    auto(sched, "warmup_min_lr", 0)
    auto(sched, "warmup_max_lr", args.learning_rate)
    auto(sched, "warmup_num_steps", warmup)
    auto(sched, "total_num_steps", num_training_steps)
    hidden = getattr(getattr(model, "config", None), "hidden_size", None)
    return {"hidden_size": hidden, "total_num_steps": num_training_steps, "warmup_num_steps": warmup,
            "lr": args.learning_rate, "weight_decay": args.weight_decay,
            "micro_batch_per_gpu": args.per_device_train_batch_size,
            "gradient_accumulation_steps": args.gradient_accumulation_steps}


class _StepsInTrainingStep:
    """The Trainer's optimizer: the engine stepped it already, in training_step (as Accelerate's DeepSpeed wrapper,
    step() has nothing left to do). Shows the engine's learning rate in param_groups."""

    def __init__(self, trainer):
        self._trainer = trainer

    @property
    def param_groups(self):
        return [{"lr": self._trainer._zt_lr, "params": []}]

    def step(self, closure=None):
        return None

    def zero_grad(self, set_to_none=True):
        return None

    def state_dict(self):
        return {}


class _EngineSchedule:
    """The Trainer's lr_scheduler: the engine's schedule, advanced by the engine's optimizer step."""

    def __init__(self, trainer):
        self._trainer = trainer

    def step(self, *args, **kwargs):
        return None

    def get_last_lr(self):
        return [self._trainer._zt_lr]

    def state_dict(self):
        return {}


class Trainer(transformers.Trainer):
    """transformers.Trainer whose training runs on zerotrain's C++ engine. Takes the Trainer's arguments plus
    zerotrain_config: a DeepSpeed config (path, JSON text or dict), "auto" values allowed."""

    def __init__(self, *args, zerotrain_config=None, unit_classes=None, **kwargs):
        if zerotrain_config is None:
            raise ValueError("zerotrain.hf.Trainer: zerotrain_config is required (a DeepSpeed config: path, JSON text "
                             "or dict)")
        super().__init__(*args, **kwargs)
        if getattr(self.args, "deepspeed", None):
            raise ValueError("zerotrain.hf.Trainer: TrainingArguments.deepspeed is set; pass the config as "
                             "zerotrain_config instead")
        self._zt_config = config_to_dict(None, zerotrain_config, None)
        self._zt_units = unit_classes
        self._zt_engine = None
        self._zt_lr = 0.0

    # --- building the engine where the Trainer builds its optimizer ---

    def _zt_build(self, num_training_steps):
        if self._zt_engine is not None:
            return
        config = json.loads(json.dumps(self._zt_config))
        run_info = _fill_auto(config, self.args, self.model, num_training_steps)
        args = self.args
        weight_decay = []
        if "optimizer" not in config:
            # As Transformers' DeepSpeed integration: without the section, the Trainer's own optimizer, AdamW on its
            # decay / no-decay groups (the engine applies the groups' weight decay per parameter).
            optim = str(getattr(args.optim, "value", args.optim))
            if optim not in _TRAINER_ADAMW:
                raise ValueError(f"zerotrain.hf.Trainer: the config has no \"optimizer\" section and "
                                 f"TrainingArguments.optim is {optim!r}; allowed without a section: "
                                 f"{', '.join(sorted(_TRAINER_ADAMW))} (the engine runs AdamW), or an \"optimizer\" "
                                 "section in the config")
            config["optimizer"] = {"type": "AdamW", "params": {
                "lr": args.learning_rate, "betas": [args.adam_beta1, args.adam_beta2], "eps": args.adam_epsilon,
                "weight_decay": args.weight_decay}}
            decay = set(self.get_decay_parameter_names(self.model))
            weight_decay = [(p, 0.0) for n, p in self.model.named_parameters() if p.requires_grad and n not in decay]
        self._zt_engine = ZeroTrainEngine(self.model, config, run_info, unit_classes=self._zt_units,
                                          weight_decay=weight_decay)
        if "scheduler" not in config:
            # Likewise the Trainer's own schedule (lr_scheduler_type, warmup), stepped by the engine after each
            # optimizer step; lr_holder carries its learning rate to the engine.
            schedule = transformers.get_scheduler(args.lr_scheduler_type, optimizer=lr_holder(args.learning_rate),
                                                  num_warmup_steps=args.get_warmup_steps(num_training_steps),
                                                  num_training_steps=num_training_steps,
                                                  scheduler_specific_kwargs=args.lr_scheduler_kwargs)
            self._zt_engine._set_client_scheduler(schedule)
        self._zt_lr = self._zt_engine.get_lr()[0]

    # Transformers builds the optimizer in create_optimizer_and_scheduler(num_training_steps) (older versions) or
    # create_optimizer() from _prepare_for_training(max_steps) (newer): the engine is built at the first of them.
    def _prepare_for_training(self, max_steps, *args, **kwargs):
        self._zt_build(max_steps)
        return super()._prepare_for_training(max_steps, *args, **kwargs)

    def create_optimizer_and_scheduler(self, num_training_steps):
        self._zt_build(num_training_steps)
        self.create_optimizer()
        self.create_scheduler(num_training_steps)

    def create_optimizer(self, model=None):
        if self._zt_engine is None:
            if self.args.max_steps <= 0:
                raise RuntimeError("zerotrain.hf.Trainer: the number of training steps is not known yet")
            self._zt_build(self.args.max_steps)
        if self.optimizer is None:
            self.optimizer = _StepsInTrainingStep(self)
        return self.optimizer

    def create_scheduler(self, num_training_steps, optimizer=None):
        if self.lr_scheduler is None:
            self.lr_scheduler = _EngineSchedule(self)
        return self.lr_scheduler

    def _wrap_model(self, model, training=True, dataloader=None):
        # Training goes through the engine; returning another object than self.model keeps Accelerate from
        # wrapping the model (in DDP): the engine reduces the gradients.
        if training and self._zt_engine is not None:
            return self._zt_engine
        return model

    # --- one micro-step ---

    def training_step(self, model, inputs, num_items_in_batch=None):
        engine = self._zt_engine
        model.train()
        inputs = self._prepare_inputs(inputs)
        with self.compute_loss_context_manager():
            # A mean over this micro-batch; engine.backward divides by gradient_accumulation_steps.
            loss = self.compute_loss(model, inputs)
        if self.args.n_gpu > 1:
            loss = loss.mean()
        if engine.is_gradient_accumulation_boundary():
            self._zt_lr = engine.get_lr()[0]  # the lr this optimizer step uses, for the Trainer's log
        engine.backward(loss)
        engine.step()
        return loss.detach() / engine.gradient_accumulation_steps()

    def _clip_grad_norm(self, model):
        # The device tensor: the Trainer reads it (.item()) only when it logs, so a step need not wait for backward.
        norm = self._zt_engine.get_global_grad_norm_tensor()
        return norm if norm is not None else torch.tensor(0.0)

    def _get_grad_norm(self, model, grad_norm=None):
        # The device tensor as well (the Trainer's log reads it when it logs): no wait for the device every step.
        if grad_norm is not None:
            return grad_norm
        norm = self._zt_engine.get_global_grad_norm_tensor()
        return norm if norm is not None else 0.0

    # --- checkpoints: the model's weights for from_pretrained, the engine's state for resuming ---

    def save_model(self, output_dir=None, _internal_call=False):
        output_dir = output_dir or self.args.output_dir
        engine = self._zt_engine
        if engine is None or engine.zero_optimization_stage() < 3:
            return super().save_model(output_dir, _internal_call)
        with GatheredParameters(engine):
            return super().save_model(output_dir, _internal_call)

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        checkpoint = os.path.join(self._get_output_dir(trial=trial),
                                  f"{transformers.trainer_utils.PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        self._zt_engine.save_checkpoint(checkpoint, tag=_ENGINE_TAG)

    def _save_optimizer_and_scheduler(self, output_dir):
        pass  # the engine's checkpoint (_save_checkpoint) holds them

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        pass  # the weights come back with the engine's state in _load_optimizer_and_scheduler

    def _load_optimizer_and_scheduler(self, checkpoint):
        if checkpoint is None:
            return
        if self._zt_engine is None:
            raise RuntimeError("zerotrain.hf.Trainer: resuming before the engine exists")
        self._zt_engine.load_checkpoint(checkpoint, tag=_ENGINE_TAG)
        self._zt_lr = self._zt_engine.get_lr()[0]
