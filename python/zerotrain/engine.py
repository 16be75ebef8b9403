"""zerotrain.initialize and the engine: DeepSpeed's Python API over the C++ engine.

The C++ engine owns training: it moves and casts the module's parameters, flattens or partitions them (ZeRO
stages 0-3), reduces gradients, steps the optimizer and schedule of the config, and writes checkpoints. Python
describes the module to it (submodules, parameters, buffers and, at stage 3, which submodules are units), calls the
module, and tells it from module hooks when a unit's forward starts and ends.
"""
import atexit
import json
import warnings
import weakref

import torch
import torch.distributed as dist
from torch.utils import _pytree as pytree

from . import _C
from .comm import current_group, init_distributed
from .config import config_to_dict
from .monitor import MonitorMaster, start_clients

# torch.optim classes the C++ engine implements, by the config's optimizer "type".
_CLIENT_OPTIMIZERS = {
    torch.optim.AdamW: "AdamW",
    torch.optim.Adam: "Adam",
    torch.optim.SGD: "SGD",
    torch.optim.Adagrad: "Adagrad",
}
# Hyperparameters each of them carries over, and the value zerotrain's optimizer cannot honour otherwise.
_UNSUPPORTED_HYPERPARAMETERS = {"amsgrad": False, "nesterov": False, "dampening": 0, "maximize": False,
                                "lr_decay": 0, "initial_accumulator_value": 0}
_COPIED_HYPERPARAMETERS = ("lr", "betas", "eps", "weight_decay", "momentum")


# Engines alive in this process: released at exit, before Python and torch tear down what they use (the process
# group's threads must not outlive the interpreter).
_LIVE_ENGINES = weakref.WeakSet()


def release_engines():
    """Drops every engine's C++ side (its hooks, buffers and process-group reference). Runs at exit."""
    for engine in list(_LIVE_ENGINES):
        engine._release()


atexit.register(release_engines)


def _optimizer_section(optimizer):
    """The config's "optimizer" section equivalent to a torch.optim instance the user built."""
    kind = _CLIENT_OPTIMIZERS.get(type(optimizer))
    if kind is None:
        allowed = ", ".join(f"torch.optim.{c.__name__}" for c in _CLIENT_OPTIMIZERS)
        raise ValueError(f"initialize: optimizer {type(optimizer).__name__} is not one zerotrain runs; allowed: "
                         f"{allowed}, or an \"optimizer\" section in the config")
    groups = optimizer.param_groups
    first = _agreed_hyperparameters(groups, "param_groups", owner="optimizer ")
    for k in ("weight_decay", "lr"):  # differing values: the first group's, and the rest per parameter
        if k in groups[0]:
            first.setdefault(k, groups[0][k])
    for k, ok in _UNSUPPORTED_HYPERPARAMETERS.items():
        if k in first and first[k] != ok:
            raise ValueError(f"initialize: {kind} with {k}={first[k]!r} is not supported; allowed: {k}={ok!r}")
    params = {}
    for k in _COPIED_HYPERPARAMETERS:
        if k in first:
            v = first[k]
            params[k] = list(v) if isinstance(v, tuple) else (float(v) if torch.is_tensor(v) else v)
    return {"type": kind, "params": params}


# Param-group keys that may differ between groups: the engine applies them per parameter (_per_group); and keys
# torch's lr schedulers add to each group for themselves (each group's base lr), which no optimizer reads.
_PER_GROUP_KEYS = ("weight_decay", "lr")
_SCHEDULER_KEYS = ("initial_lr",)


def _agreed_hyperparameters(groups, where, owner=""):
    """The hyperparameters that param groups (dicts) set alike. weight_decay and lr may differ between them (the
    decay / no-decay split, layer-wise learning rates: the engine applies them per parameter, see _per_group) and are
    then left out; any other key set differently is an error naming owner + where[i], never a silent choice."""
    differing = {k for k in _PER_GROUP_KEYS if len({g.get(k, _MISSING) for g in groups}) > 1} | set(_SCHEDULER_KEYS)
    agreed = {}
    for k in sorted({k for g in groups for k in g if k != "params"}):
        if k in differing:
            continue
        values = [g.get(k, _MISSING) for g in groups]
        for i, v in enumerate(values[1:], start=1):
            if v != values[0]:
                shown = lambda x: "(not set)" if x is _MISSING else repr(x)  # noqa: E731
                raise ValueError(f"initialize: {owner}{where}[{i}] has {k}={shown(v)} but {where}[0] has "
                                 f"{shown(values[0])}; zerotrain applies one set of optimizer hyperparameters to "
                                 "all parameters except weight_decay and lr (per-group values of other keys are "
                                 "not supported yet): give every group the same value")
        if values[0] is not _MISSING:
            agreed[k] = values[0]
    return agreed


def _per_group(groups, key):
    """(parameter, value) for the parameters of every group that sets `key` (weight_decay or lr), when the groups'
    values differ: the engine applies them per parameter (EngineOptions::weight_decay / lr_scale; a value equal to
    the config's changes nothing). Groups without the key take the config's."""
    if len({g.get(key, _MISSING) for g in groups}) <= 1:
        return []  # one value for all: the config's "optimizer" section carries it
    pairs = []
    for g in groups:
        value = g.get(key, _MISSING)
        if value is not _MISSING:
            pairs.extend((p, float(value)) for p in g["params"])
    return pairs


# DeepSpeed's config schedules that give every param group one learning rate (their lr parameters are broadcast to
# all groups: deepspeed/runtime/lr_schedules.py _format_param); WarmupCosineLR scales each group's own instead.
_ONE_LR_SCHEDULES = ("WarmupLR", "WarmupDecayLR", "OneCycle", "LRRangeTest")


def _lr_scales(group_lrs, effective):
    """EngineOptions::lr_scale from (parameter, lr) pairs: each lr over the config optimizer's (resolved) lr, which
    the schedule drives. Under a schedule that sets one lr for all groups (as DeepSpeed's do) the groups' values are
    not used, with a warning."""
    if not group_lrs:
        return []
    schedule = (effective.get("scheduler") or {}).get("type")
    if schedule in _ONE_LR_SCHEDULES:
        warnings.warn(f"initialize: param groups set their own lr, but the config's {schedule} scheduler gives every "
                      "group the same learning rate (as DeepSpeed's does); the groups' lr values are not used",
                      stacklevel=3)
        return []
    if "optimizer" not in effective:
        raise ValueError("initialize: param groups set their own lr but the config has no \"optimizer\" section "
                         "(and no optimizer object was given) for them to apply to")
    base = float(effective["optimizer"]["params"]["lr"])
    if base <= 0:
        raise ValueError(f"initialize: param groups set their own lr but the optimizer's lr is {base}; per-group "
                         "learning rates are applied relative to it: allowed: an optimizer lr > 0")
    for p, lr in group_lrs:
        if not lr > 0:
            raise ValueError(f"initialize: a param group has lr={lr}; allowed: lr > 0 (freeze parameters with "
                             "requires_grad=False instead)")
    return [(p, lr / base) for p, lr in group_lrs]


def _stage3_units(model, unit_classes):
    """Submodules that become stage-3 units, with the parameters each reads: every instance of unit_classes (class
    objects or names; default: the model's _no_split_modules, e.g. LlamaDecoderLayer), else every element of an
    nn.ModuleList / nn.Sequential; parameters outside those, module by module. Units may nest."""
    names = set()
    classes = []
    for c in unit_classes or getattr(model, "_no_split_modules", None) or []:
        (names.add(c) if isinstance(c, str) else classes.append(c))

    def is_unit_class(m):
        return type(m).__name__ in names or (classes and isinstance(m, tuple(classes)))

    generic = not names and not classes
    units = []  # (module, [parameters])

    def visit(module, as_unit):
        if as_unit or is_unit_class(module):
            params = list(module.parameters())
            if params:
                units.append((module, params))
            return
        own = list(module.parameters(recurse=False))
        if own:
            units.append((module, own))
        elements = generic and isinstance(module, (torch.nn.ModuleList, torch.nn.Sequential))
        for child in module.children():
            visit(child, elements)

    visit(model, False)
    return units


def _describe(model):
    """Every module (parents first) with its own parameters and buffers and its class name, for the C++ mirror of
    the module tree."""
    modules = []
    for name, m in model.named_modules():
        params = [(k, p) for k, p in m._parameters.items() if p is not None]
        buffers = [(k, b) for k, b in m._buffers.items() if b is not None]
        modules.append((name, params, buffers, type(m).__name__))
    return modules


def _tensor_leaves(tree):
    leaves, spec = pytree.tree_flatten(tree)
    return leaves, spec, [i for i, x in enumerate(leaves) if isinstance(x, torch.Tensor) and x.requires_grad]


class _EngineOptimizer:
    """What initialize() returns as the optimizer: a view of the C++ engine's optimizer. The engine steps it in
    engine.step(); param_groups shows the learning rate of the next step and the config's hyperparameters."""

    def __init__(self, engine, hyperparameters):
        self._engine = engine
        self._hyper = hyperparameters

    @property
    def param_groups(self):
        """One dict per param group given to initialize (else one for all trainable parameters): the config's
        hyperparameters, the group's own weight_decay, and its learning rate of the next step."""
        lrs = self._engine.get_lr()
        if not self._engine._groups:
            group = dict(self._hyper)
            group["lr"] = lrs[0]
            group["params"] = [p for p in self._engine.module.parameters() if p.requires_grad]
            return [group]
        groups = []
        for given, lr in zip(self._engine._groups, lrs if len(lrs) == len(self._engine._groups) else
                             lrs * len(self._engine._groups)):
            group = dict(self._hyper)
            if "weight_decay" in given:
                group["weight_decay"] = given["weight_decay"]
            group["lr"] = lr
            group["params"] = [p for p in given["params"] if p.requires_grad]
            groups.append(group)
        return groups

    @property
    def cur_scale(self):
        return self._engine._engine.loss_scale()

    loss_scale = cur_scale

    def zero_grad(self, set_to_none=True):
        self._engine.zero_grad()


class _EngineScheduler:
    """What initialize() returns as the lr_scheduler when the config has a "scheduler" section: the C++ schedule,
    stepped by engine.step()."""

    def __init__(self, engine, section):
        self._engine = engine
        self.type = section.get("type")

    def get_lr(self):
        return self._engine.get_lr()

    def get_last_lr(self):
        return self._engine.get_lr()

    @property
    def last_batch_iteration(self):
        return self._engine.global_steps - 1

    def state_dict(self):
        return {"last_batch_iteration": self.last_batch_iteration}


class ZeroTrainEngine(torch.nn.Module):
    """DeepSpeed's engine API for a Python module, run by zerotrain's C++ engine. Built by zerotrain.initialize."""

    def __init__(self, model, config, run_info, unit_classes=None, weight_decay=(), groups=()):
        super().__init__()
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"initialize: model must be a torch.nn.Module, not {type(model).__name__}")
        init_distributed()
        group_name, device = current_group()
        self.module = model
        text = json.dumps(config)
        effective = json.loads(_C.check_config(text, dist.get_world_size(), run_info))
        self._config = effective
        stage = int(effective.get("zero_optimization", {}).get("stage", 0))
        units = _stage3_units(model, unit_classes) if stage == 3 else []
        self._groups = [g for g in groups if isinstance(g, dict)]  # initialize's param groups: optimizer.param_groups
        group_lrs = _per_group(self._groups, "lr")
        lr_scale = _lr_scales(group_lrs, effective)
        # wandb / comet: their clients log rank 0's events, which the C++ engine hands over after each step.
        self._monitor_clients = start_clients(effective, dist.get_rank(), device)
        sink = self._monitor_clients.write_events if self._monitor_clients is not None else None
        self._engine = _C.Engine(_describe(model), [params for _, params in units], text, group_name, str(device),
                                 run_info, list(weight_decay), lr_scale, sink)
        self.monitor = MonitorMaster(self, effective)
        # Per param group its lr over the engine's, where groups set different lrs (else None).
        scale_of = {id(p): s for p, s in lr_scale}
        self._group_lr_scales = [scale_of.get(id(g["params"][0]), 1.0) if g["params"] else 1.0
                                 for g in self._groups] if group_lrs else None
        self._hooks = []
        for index, (module, _) in enumerate(units):
            self._hooks.append(module.register_forward_pre_hook(self._unit_pre_hook(index), with_kwargs=True))
            self._hooks.append(module.register_forward_hook(self._unit_post_hook(), with_kwargs=True,
                                                            always_call=True))
        self._fp16_auto_cast = bool(effective.get("fp16", {}).get("enabled")) and bool(
            effective.get("fp16", {}).get("auto_cast"))
        self._client_scheduler = None
        self._step_applied = False
        # An autotuning experiment ranked by FLOPS: the first micro-step's forward and backward are counted
        # (torch.utils.flop_counter), as DeepSpeed's flops profiler counts a step, and handed to the engine.
        tuning = effective.get("autotuning", {}) or {}
        self._count_flops = bool(tuning.get("enabled")) and str(tuning.get("metric", "")).lower() == "flops" and bool(
            tuning.get("metric_path"))
        self._flop_counter = None
        self.optimizer = self.lr_scheduler = self.training_dataloader = None  # initialize sets them
        _LIVE_ENGINES.add(self)

    def _release(self):
        for handle in self._hooks:
            handle.remove()
        self._hooks = []
        self._engine = None

    # --- stage-3 unit hooks: the C++ engine gathers, prefetches and frees; Python only reports the boundaries ---

    def _unit_pre_hook(self, index):
        engine = self._engine

        def hook(module, args, kwargs):
            engine.begin_segment(index, torch.is_grad_enabled() or module.training)
            if not torch.is_grad_enabled():
                return None
            leaves, spec, grad_inputs = _tensor_leaves((args, kwargs))
            if not grad_inputs:
                return None
            wrapped = engine.segment_inputs([leaves[i] for i in grad_inputs])
            for i, t in zip(grad_inputs, wrapped):
                leaves[i] = t
            return pytree.tree_unflatten(leaves, spec)

        return hook

    def _unit_post_hook(self):
        engine = self._engine

        def hook(module, args, kwargs, output):
            if torch.is_grad_enabled():
                leaves, _, grad_outputs = _tensor_leaves(output)
                if grad_outputs:
                    engine.segment_outputs([leaves[i] for i in grad_outputs])
            engine.end_segment()
            return None

        return hook

    # --- the training loop ---

    def forward(self, *args, **kwargs):
        if self._fp16_auto_cast:
            args, kwargs = pytree.tree_map_only(
                torch.Tensor, lambda t: t.half() if t.is_floating_point() else t, (args, kwargs))
        if self._count_flops and self._flop_counter is None:
            from torch.utils.flop_counter import FlopCounterMode
            self._flop_counter = FlopCounterMode(display=False)
            self._flop_counter.__enter__()  # left in backward(), after the model's backward
        self._engine.begin_forward()
        hooks = []
        try:
            if self._engine.flops_profile_pending():
                hooks = self._profile_hooks()
            return self.module(*args, **kwargs)
        finally:
            for h in hooks:
                h.remove()
            self._engine.end_forward()

    def _profile_hooks(self):
        """flops_profiler: this forward is the profiled one. Each module's forward is bracketed for the C++ profiler
        (attribution of operators without parameters, per-module latency); the hooks live for this forward only."""
        engine, hooks = self._engine, []
        for name, m in self.module.named_modules():
            hooks.append(m.register_forward_pre_hook(lambda mod, args, name=name: engine.begin_module(name)))
            hooks.append(m.register_forward_hook(lambda mod, args, out: engine.end_module(), always_call=True))
        return hooks

    def backward(self, loss, retain_graph=False, scale_wrt_gas=True):
        """Backpropagates loss scaled by 1/gradient_accumulation_steps (and the fp16 loss scale) and reduces
        gradients as the ZeRO stage prescribes."""
        if retain_graph:
            raise ValueError("backward: retain_graph=True is not supported; allowed: False")
        if not scale_wrt_gas:
            raise ValueError("backward: scale_wrt_gas=False is not supported; allowed: True (the loss is divided "
                             "by gradient_accumulation_steps)")
        if not isinstance(loss, torch.Tensor):
            raise TypeError(f"backward: loss must be a tensor, not {type(loss).__name__}")
        try:
            self._engine.backward(loss)
        finally:
            if self._count_flops and self._flop_counter is not None:
                self._flop_counter.__exit__(None, None, None)
                self._count_flops = False
                flops = self._flop_counter.get_total_flops()
                if flops > 0:
                    self._engine.set_flops_per_sample(flops / self._engine.train_micro_batch_size_per_gpu())
        return loss

    def step(self, lr_kwargs=None):
        """Ends a micro-step; on a gradient accumulation boundary steps the optimizer and the schedule (a client
        lr_scheduler given to initialize: its step(**lr_kwargs) after every optimizer step that was not skipped, as
        DeepSpeed does; its learning rate then applies to the next step)."""
        if lr_kwargs and self._client_scheduler is None:
            raise ValueError(f"step: lr_kwargs {lr_kwargs!r} are given but no lr_scheduler object was passed to "
                             "initialize; allowed: None")
        steps, skipped = self._engine.global_steps(), self._engine.skipped_steps()
        self._engine.step()
        self._step_applied = self._engine.global_steps() > steps and self._engine.skipped_steps() == skipped
        if self._client_scheduler is not None and self._engine.global_steps() > steps and (
                self._engine.skipped_steps() == skipped):
            # The engine stepped the parameters (the client optimizer's own step() never runs): tell torch's
            # scheduler so, or it warns that the scheduler stepped before the optimizer.
            self._client_scheduler.optimizer._opt_called = True
            self._client_scheduler.step(**(lr_kwargs or {}))
            self._apply_client_lr()

    def _set_client_scheduler(self, scheduler):
        """The lr_scheduler object of initialize: its optimizer's learning rate becomes the engine's."""
        self._client_scheduler = scheduler
        self._apply_client_lr()

    def _apply_client_lr(self):
        groups = self._client_scheduler.optimizer.param_groups
        lrs = [float(g["lr"]) for g in groups]
        scales = self._group_lr_scales or [1.0] * len(lrs)
        if len(scales) != len(lrs):
            raise ValueError(f"lr_scheduler: its optimizer has {len(lrs)} param groups; the engine was built with "
                             f"{len(scales)}")
        # Per-group learning rates are fixed multiples of the first group's (EngineOptions::lr_scale): the schedule
        # may move them only together (LambdaLR, StepLR, the warmup schedules of transformers do).
        for i, lr in enumerate(lrs):
            want = lrs[0] * scales[i] / scales[0]
            if abs(lr - want) > 1e-6 * max(abs(lr), abs(want), 1e-30):
                raise ValueError(f"lr_scheduler: param_groups[{i}] has lr {lr!r}, but zerotrain keeps each group's "
                                 f"learning rate at its ratio to param_groups[0]'s from initialize ({scales[i] / scales[0]!r}"
                                 f" x {lrs[0]!r} = {want!r}); allowed: schedules that scale every group alike")
        self._engine.set_lr(lrs[0] / scales[0])

    def zero_grad(self, set_to_none=True):
        self._engine.zero_grad()

    def is_gradient_accumulation_boundary(self):
        return self._engine.is_gradient_accumulation_boundary()

    def set_gradient_accumulation_boundary(self, is_boundary):
        """DeepSpeed's manual boundary: set it before each micro-step's backward; True makes that micro-step a
        boundary (the optimizer steps in the next step()) whatever gradient_accumulation_steps says; None returns to
        counting micro-steps."""
        if is_boundary is not None and not isinstance(is_boundary, bool):
            raise TypeError(f"set_gradient_accumulation_boundary: is_boundary must be a bool or None, not "
                            f"{type(is_boundary).__name__}")
        self._engine.set_gradient_accumulation_boundary(is_boundary)

    # --- checkpoints ---

    def save_checkpoint(self, save_dir, tag=None, client_state=None, save_latest=True,
                        exclude_frozen_parameters=False):
        """Writes the training state to save_dir/tag (default global_step<N>) and points save_dir/latest at it;
        every rank must call it. client_state must be JSON-serializable; load_checkpoint returns it."""
        if not save_latest:
            raise ValueError("save_checkpoint: save_latest=False is not supported; allowed: True")
        if exclude_frozen_parameters:
            raise ValueError("save_checkpoint: exclude_frozen_parameters=True is not supported; allowed: False "
                             "(frozen parameters are not saved either way: they belong to the model)")
        state = client_state if client_state is not None else {}
        if self._client_scheduler is not None:
            if not isinstance(state, dict):
                raise ValueError(f"save_checkpoint: client_state must be a dict when an lr_scheduler object is "
                                 f"trained with (its state is saved next to yours), not {type(state).__name__}")
            state = dict(state)
            state[_SCHEDULER_KEY] = self._client_scheduler.state_dict()
        try:
            client = json.dumps(state)
        except (TypeError, ValueError) as e:
            extra = " (and so must the lr_scheduler's state_dict)" if self._client_scheduler is not None else ""
            raise ValueError(f"save_checkpoint: client_state must be JSON-serializable{extra}: {e}") from None
        self._engine.save_checkpoint(str(save_dir), "" if tag is None else str(tag), client)
        return True

    def load_checkpoint(self, load_dir, tag=None, load_module_strict=True, load_optimizer_states=True,
                        load_lr_scheduler_states=True, load_module_only=False, custom_load_fn=None):
        """Loads load_dir/tag (default: what load_dir/latest names), saved at any world size and ZeRO stage.
        Returns (path, client_state) as DeepSpeed does."""
        for name, value, ok in (("load_module_strict", load_module_strict, True),
                                ("load_optimizer_states", load_optimizer_states, True),
                                ("load_lr_scheduler_states", load_lr_scheduler_states, True),
                                ("load_module_only", load_module_only, False),
                                ("custom_load_fn", custom_load_fn, None)):
            if value != ok:
                raise ValueError(f"load_checkpoint: {name}={value!r} is not supported; allowed: {ok!r}")
        client = json.loads(self._engine.load_checkpoint(str(load_dir), "" if tag is None else str(tag)))
        path = str(load_dir) if tag is None else f"{load_dir}/{tag}"
        saved = client.pop(_SCHEDULER_KEY, None) if isinstance(client, dict) else None
        if self._client_scheduler is not None:
            if saved is None:
                raise ValueError(f"load_checkpoint: {path} holds no lr_scheduler state, but an lr_scheduler object "
                                 "is trained with (the checkpoint was saved without one)")
            self._client_scheduler.load_state_dict(saved)
            # torch's schedulers restore their own state, not their optimizer's learning rate: set it from theirs.
            for group, lr in zip(self._client_scheduler.optimizer.param_groups,
                                 self._client_scheduler.get_last_lr()):
                group["lr"] = lr
            self._apply_client_lr()
        return path, client

    def save_16bit_model(self, save_dir, save_filename="pytorch_model.bin", exclude_frozen_parameters=False):
        """Writes the full 16-bit weights by module name on rank 0 (safetensors when save_filename ends in
        .safetensors); at stage 3 only with stage3_gather_16bit_weights_on_model_save. Returns whether written."""
        if exclude_frozen_parameters:
            raise ValueError("save_16bit_model: exclude_frozen_parameters=True is not supported; allowed: False")
        return self._engine.save_16bit_model(str(save_dir), save_filename)

    def save_fp16_model(self, save_dir, save_filename="pytorch_model.bin", exclude_frozen_parameters=False):
        """DeepSpeed's older name of save_16bit_model."""
        return self.save_16bit_model(save_dir, save_filename, exclude_frozen_parameters)

    # --- state ---

    @property
    def global_steps(self):
        return self._engine.global_steps()

    @property
    def global_samples(self):
        return self._engine.global_samples()

    @property
    def skipped_steps(self):
        return self._engine.skipped_steps()

    @property
    def micro_steps(self):
        return self._engine.micro_steps()

    @property
    def device(self):
        return torch.device(self._engine.device())

    @property
    def global_rank(self):
        return self._engine.rank()

    @property
    def world_size(self):
        return self._engine.world_size()

    dp_world_size = world_size

    @property
    def local_rank(self):
        d = self.device
        return d.index if d.type == "cuda" else int(__import__("os").environ.get("LOCAL_RANK", "0"))

    @property
    def config(self):
        """The effective config (every value resolved), as a dict."""
        return self._config

    def get_lr(self):
        """The learning rate of the next step, per param group (one value without groups), as DeepSpeed's."""
        lr = self._engine.get_lr()
        return [lr * s for s in self._group_lr_scales] if self._group_lr_scales else [lr]

    def get_global_grad_norm(self):
        """The last optimizer step's global gradient norm (unscaled, before clipping), as a float: waits for that
        step's backward on the device. None before the first step."""
        return self._engine.get_global_grad_norm()

    def get_global_grad_norm_tensor(self):
        """The same norm as a 0-dim float64 tensor on the device, read without waiting (None before the first
        step)."""
        return self._engine.get_global_grad_norm_tensor()

    def train_batch_size(self):
        return self._engine.train_batch_size()

    def train_micro_batch_size_per_gpu(self):
        return self._engine.train_micro_batch_size_per_gpu()

    def gradient_accumulation_steps(self):
        return self._engine.gradient_accumulation_steps()

    def zero_optimization_stage(self):
        return self._engine.zero_stage()

    def fp16_enabled(self):
        return bool(self._config.get("fp16", {}).get("enabled"))

    def bfloat16_enabled(self):
        return bool(self._config.get("bf16", {}).get("enabled"))

    def loss_scale(self):
        return self._engine.loss_scale()

    def get_wall_clock_timers(self):
        """wall_clock_breakdown's timers at the last step(), in ms by DeepSpeed's names (fwd_microstep,
        bwd_microstep, bwd_inner_microstep, bwd_allreduce_microstep, step_microstep, and fwd, bwd, ... summed over
        the optimizer step's micro-steps); {} when wall_clock_breakdown is off. DeepSpeed's get_wall_clock_timers."""
        return dict(self._engine.wall_clock_timers())

    def was_step_applied(self):
        """Whether the last step() updated the parameters (False between accumulation boundaries and on a step
        skipped for fp16 overflow), as DeepSpeed's."""
        return self._step_applied

    def gradient_clipping(self):
        return float(self._config.get("gradient_clipping", 0.0))


def _dataloader(engine, training_data, collate_fn):
    from torch.utils.data import DataLoader, DistributedSampler

    sampler = DistributedSampler(training_data, num_replicas=engine.world_size, rank=engine.global_rank)
    drop_last = bool(engine.config.get("dataloader_drop_last", False))
    return DataLoader(training_data, batch_size=engine.train_micro_batch_size_per_gpu(), sampler=sampler,
                      collate_fn=collate_fn, drop_last=drop_last)


def initialize(args=None, model=None, optimizer=None, model_parameters=None, training_data=None, lr_scheduler=None,
               distributed_port=None, mpu=None, dist_init_required=None, collate_fn=None, config=None,
               config_params=None, run_info=None, unit_classes=None):
    """DeepSpeed's initialize: returns (engine, optimizer, training_dataloader, lr_scheduler).

    config: a path to a DeepSpeed JSON file, JSON text or a dict (or args.deepspeed_config). optimizer: None (the
    config's "optimizer" section) or a torch.optim AdamW/Adam/SGD/Adagrad instance, whose hyperparameters the C++
    optimizer takes. model_parameters: the parameters to train (others are frozen); default all that require grad.
    training_data: a torch Dataset; the returned DataLoader gives each rank its share, micro-batch by micro-batch.
    lr_scheduler: a scheduler object built on `optimizer`, or a function of the optimizer (DeepSpeed's); it replaces
    the config's "scheduler", engine.step() steps it and applies its learning rate. Param groups (of `optimizer` or
    `model_parameters`) may differ in weight_decay and lr only (lr: relative to the optimizer's, which the schedule
    drives; DeepSpeed's WarmupLR / WarmupDecayLR / OneCycle / LRRangeTest give every group one lr). run_info: values for "auto" entries (micro_batch_per_gpu,
    gradient_accumulation_steps, hidden_size, lr, weight_decay, total_num_steps, warmup_num_steps). unit_classes:
    stage 3's unit submodule classes (default: the model's _no_split_modules, else the elements of ModuleLists and
    Sequentials).
    """
    if model is None:
        raise ValueError("initialize: model is required")
    if mpu is not None:
        raise ValueError("initialize: mpu (model parallelism) is not supported; allowed: None")
    if dist_init_required is False and not dist.is_initialized():
        raise ValueError("initialize: dist_init_required=False but torch.distributed is not initialized")
    cfg = config_to_dict(args, config, config_params)
    if optimizer is not None:
        if "optimizer" in cfg:
            raise ValueError("initialize: both an optimizer object and an \"optimizer\" section in the config were "
                             "given; pass one of them")
        if callable(optimizer) and not isinstance(optimizer, torch.optim.Optimizer):
            raise ValueError("initialize: optimizer factories are not supported; pass a torch.optim instance or "
                             "use the config's \"optimizer\" section")
        cfg["optimizer"] = _optimizer_section(optimizer)
    if model_parameters is not None:
        model_parameters = list(model_parameters)
        for g in model_parameters:  # a group's params as a list (torch.optim accepts a tensor or any iterable)
            if isinstance(g, dict) and not isinstance(g.get("params"), list):
                g["params"] = [g["params"]] if torch.is_tensor(g.get("params")) else list(g.get("params", []))
        if optimizer is None:  # DeepSpeed builds its optimizer from them; a client optimizer has its own groups
            _apply_group_hyperparameters(model_parameters, cfg)
        chosen = set()
        for p in model_parameters:
            for q in (p["params"] if isinstance(p, dict) else [p]):
                chosen.add(id(q))
        for name, p in model.named_parameters():
            if p.requires_grad and id(p) not in chosen:
                p.requires_grad_(False)
    if lr_scheduler is not None:
        # DeepSpeed: a client scheduler (an object, or a function of the optimizer) takes the place of the config's.
        cfg.pop("scheduler", None)
    run = dict(run_info or {})
    if optimizer is not None:
        groups = optimizer.param_groups
    elif model_parameters is not None and any(isinstance(g, dict) for g in model_parameters):
        groups = model_parameters
    else:
        groups = []
    engine = ZeroTrainEngine(model, cfg, run, unit_classes=unit_classes, weight_decay=_per_group(groups, "weight_decay"),
                             groups=groups)
    hyper = dict(engine.config.get("optimizer", {}).get("params", {}))
    engine_optimizer = _EngineOptimizer(engine, hyper)
    loader = _dataloader(engine, training_data, collate_fn) if training_data is not None else None
    if lr_scheduler is not None:
        scheduler = _client_scheduler(lr_scheduler, optimizer, engine)
        engine._set_client_scheduler(scheduler)
    else:
        section = engine.config.get("scheduler")
        scheduler = _EngineScheduler(engine, section) if section else None
    # DeepSpeed's engine carries what initialize returns (scripts read engine.optimizer.param_groups, ...).
    engine.optimizer, engine.lr_scheduler, engine.training_dataloader = engine_optimizer, scheduler, loader
    return engine, engine_optimizer, loader, scheduler


def _apply_group_hyperparameters(model_parameters, cfg):
    """model_parameters given as param groups (dicts) with hyperparameters: as in DeepSpeed, a group's value
    replaces the config optimizer's. weight_decay and lr may differ between groups (the decay / no-decay split,
    layer-wise learning rates: the engine applies them per parameter); other keys must agree, else an error names
    them, never a silent change."""
    groups = [g for g in model_parameters if isinstance(g, dict)]
    if not groups:
        return
    if len(groups) != len(model_parameters):
        raise ValueError("initialize: model_parameters mixes param-group dicts and tensors; pass one kind")
    agreed = _agreed_hyperparameters(groups, "model_parameters")
    unknown = [k for k in agreed if k not in _COPIED_HYPERPARAMETERS]
    if unknown:
        raise ValueError(f"initialize: model_parameters groups set {unknown}; allowed keys besides 'params': "
                         f"{list(_COPIED_HYPERPARAMETERS)}")
    if agreed:
        if "optimizer" not in cfg:
            raise ValueError(f"initialize: model_parameters groups set {sorted(agreed)} but the config has no "
                             "\"optimizer\" section for them to apply to")
        params = cfg["optimizer"].setdefault("params", {})
        for k, v in agreed.items():
            params[k] = list(v) if isinstance(v, tuple) else v


_MISSING = object()


def lr_holder(lr):
    """A torch.optim optimizer that only carries a learning rate, for a scheduler to set and the engine to read (the
    C++ engine steps the parameters)."""
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)

_SCHEDULER_KEY = "__zerotrain_lr_scheduler__"  # the client scheduler's state_dict in a checkpoint's client state


def _client_scheduler(lr_scheduler, optimizer, engine):
    """The lr_scheduler argument of initialize as a scheduler object whose .optimizer holds the learning rate.

    An object (torch.optim.lr_scheduler.*, transformers' get_*_schedule_with_warmup) is used as given; it must be
    built on the torch.optim optimizer passed to initialize. A function is called, as DeepSpeed does, with that
    optimizer, or, when the config's "optimizer" section made the optimizer, with a torch.optim.SGD that only holds
    the config's learning rate for the scheduler to set (the C++ engine steps the parameters)."""
    if hasattr(lr_scheduler, "step") and hasattr(lr_scheduler, "optimizer"):
        if optimizer is not None and lr_scheduler.optimizer is not optimizer:
            raise ValueError("initialize: the lr_scheduler object was built on another optimizer than the one "
                             "passed to initialize")
        return lr_scheduler
    if not callable(lr_scheduler):
        raise ValueError(f"initialize: lr_scheduler must be a scheduler object (with step() and .optimizer) or a "
                         f"function of the optimizer, not {type(lr_scheduler).__name__}")
    holder = optimizer if optimizer is not None else lr_holder(engine.get_lr()[0])
    scheduler = lr_scheduler(holder)
    if not (hasattr(scheduler, "step") and getattr(scheduler, "optimizer", None) is holder):
        raise ValueError("initialize: the lr_scheduler function must return a scheduler of the optimizer it is "
                         f"given (with step() and .optimizer), not {type(scheduler).__name__}")
    return scheduler
