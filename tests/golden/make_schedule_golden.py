#!/usr/bin/env python3
"""Writes lr_schedules.json and loss_scaler.json: the sequences DeepSpeed's LR schedules and loss scalers produce,
which tests/torch/lr_schedule_test.cc and loss_scaler_test.cc compare zerotrain against step by step.

Plain Python (no torch, no DeepSpeed): each class below re-derives one DeepSpeed class from its source at
deepspeed/runtime/lr_schedules.py, deepspeed/runtime/fp16/loss_scaler.py and deepspeed/runtime/fp16/
fused_optimizer.py (commit edaa7221, 2026-08), driven the way DeepSpeed drives it: the optimizer's param group is
a dict, constructing the schedule may write into it, and every scheduler.step() / update_scale() call is recorded.
What the tests check is therefore what DeepSpeed leaves *in the optimizer*, including right after construction.

    python3 tests/golden/make_schedule_golden.py   # rewrites both files next to this script
"""

import json
import math
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))

# A value the param group holds before any schedule touched it: lets the recorder tell "left alone" from "set".
UNTOUCHED = object()


class FakeOptimizer:
    """One param group, like a torch optimizer built from a DeepSpeed config with lr `base_lr`."""

    def __init__(self, base_lr, has_betas=True):
        self.param_groups = [{'lr': base_lr, 'betas': UNTOUCHED}]
        self.defaults = {'lr': base_lr}
        if has_betas:
            self.defaults['betas'] = (0.9, 0.999)


def set_lr(opt, lr):
    # deepspeed.runtime.lr_schedules.update_lr
    opt.param_groups[0]['lr'] = lr


# ---------------------------------------------------------------------------------------------------------------
# LR schedules
# ---------------------------------------------------------------------------------------------------------------


class LRRangeTest:
    """Mirrors lr_schedules.LRRangeTest: lr = min_lr * (1 + rate * interval), interval continuous or floored."""

    def __init__(self, opt, lr_range_test_min_lr=1e-3, lr_range_test_step_size=2000, lr_range_test_step_rate=1.0,
                 lr_range_test_staircase=False, last_batch_iteration=-1):
        assert lr_range_test_step_size > 0
        self.opt = opt
        self.min_lr = lr_range_test_min_lr
        self.step_size = lr_range_test_step_size
        self.step_rate = lr_range_test_step_rate
        self.staircase = lr_range_test_staircase
        self.last = last_batch_iteration
        if last_batch_iteration == -1:  # __init__ writes min_lr only on a fresh start
            set_lr(opt, self.min_lr)

    def _interval(self):
        # _staircase_interval / _continuous_interval
        if self.staircase:
            return math.floor(float(self.last + 1) / self.step_size)
        return float(self.last + 1) / self.step_size

    def get_lr(self):
        return self.min_lr * (1 + self.step_rate * self._interval())

    def step(self):
        self.last += 1
        set_lr(self.opt, self.get_lr())


class OneCycle:
    """Mirrors lr_schedules.OneCycle (_initialize_cycle, _initialize_lr, _initialize_momentum, _get_scale_factor,
    _get_cycle_lr/_mom, _get_decay_lr/_mom, get_lr, get_mom, step)."""

    def __init__(self, opt, cycle_min_lr, cycle_max_lr, decay_lr_rate=0., cycle_first_step_size=2000,
                 cycle_second_step_size=None, cycle_first_stair_count=0, cycle_second_stair_count=None,
                 decay_step_size=0, cycle_momentum=True, cycle_min_mom=0.8, cycle_max_mom=0.9, decay_mom_rate=0.,
                 last_batch_iteration=-1):
        self.opt = opt
        # _initialize_cycle: sizes become floats; the second half defaults to the first, its stairs too.
        first = float(cycle_first_step_size)
        second = float(cycle_second_step_size) if cycle_second_step_size is not None else first
        assert first > 0 and second >= 0
        self.total_size = first + second
        self.step_ratio = first / self.total_size
        self.first_step_size = first
        self.second_step_size = second
        self.first_stair_count = cycle_first_stair_count
        self.second_stair_count = (cycle_first_stair_count
                                   if cycle_second_stair_count is None else cycle_second_stair_count)
        self.decay_step_size = decay_step_size
        self.skip_lr_decay = math.isclose(decay_step_size, 0)
        self.skip_mom_decay = self.skip_lr_decay
        # _initialize_lr
        self.min_lr = cycle_min_lr
        self.max_lr = cycle_max_lr
        if last_batch_iteration == -1:
            set_lr(opt, self.min_lr)
        self.decay_lr_rate = decay_lr_rate
        if math.isclose(decay_lr_rate, 0):
            self.skip_lr_decay = True
        # _initialize_momentum: only optimizers with betas; beta2 is replaced by 0.99; a fresh start writes min_mom.
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            if 'betas' not in opt.defaults:
                self.cycle_momentum = False
            else:
                self.decay_mom_rate = decay_mom_rate
                self.min_mom = (cycle_min_mom, 0.99)
                self.max_mom = (cycle_max_mom, 0.99)
                if last_batch_iteration == -1:
                    opt.param_groups[0]['betas'] = self.min_mom
                if math.isclose(decay_mom_rate, 0):
                    self.skip_mom_decay = True
        self.last = last_batch_iteration

    def _scale_factor(self):
        b = self.last + 1
        cycle = math.floor(1 + b / self.total_size)
        x = 1. + b / self.total_size - cycle
        if x <= self.step_ratio:
            scale = x / self.step_ratio
            stairs = self.first_stair_count
        else:
            scale = (x - 1) / (self.step_ratio - 1)
            stairs = self.second_stair_count
        if stairs > 0:
            # stairs are placed from the integer position in the cycle, not from the float scale
            pos_in_cycle = b % self.total_size
            if pos_in_cycle <= self.first_step_size:
                stair = pos_in_cycle * stairs / self.first_step_size
            else:
                stair = (self.total_size - pos_in_cycle) * stairs / self.second_step_size
            scale = math.floor(stair) / stairs
        return scale

    def get_lr(self):
        if self.last < self.total_size:
            return self.min_lr + (self.max_lr - self.min_lr) * self._scale_factor()
        if self.skip_lr_decay:
            return self.min_lr
        decay_interval = (self.last - self.total_size + 1) / self.decay_step_size
        return self.min_lr / (1 + self.decay_lr_rate * decay_interval)

    def get_mom(self):
        if self.last < self.total_size:
            lo, hi = self.min_mom[0], self.max_mom[0]
            return (hi - (hi - lo) * self._scale_factor(), self.min_mom[1])
        if self.skip_mom_decay:
            return self.max_mom
        decay_interval = (self.last - self.total_size + 1) / self.decay_step_size
        return (self.max_mom[0] * (1 + self.decay_mom_rate * decay_interval), self.max_mom[1])

    def step(self):
        self.last += 1
        set_lr(self.opt, self.get_lr())
        if self.cycle_momentum:
            self.opt.param_groups[0]['betas'] = self.get_mom()


class WarmupLR:
    """Mirrors lr_schedules.WarmupLR: min + (max - min) * gamma, gamma a log or linear ramp over max(2, n) steps."""

    def __init__(self, opt, warmup_min_lr=0.0, warmup_max_lr=None, warmup_num_steps=1000, warmup_type='log',
                 last_batch_iteration=-1):
        assert warmup_num_steps > 0
        self.opt = opt
        if warmup_max_lr is None:
            warmup_max_lr = opt.param_groups[0]['lr']
        self.min_lr = warmup_min_lr
        self.delta_lr = warmup_max_lr - warmup_min_lr
        self.warmup_num_steps = max(2, warmup_num_steps)
        self.warmup_type = warmup_type
        self.inverse_log_warm_up = 1.0 / math.log(self.warmup_num_steps)
        self.last = last_batch_iteration
        if last_batch_iteration == -1:
            set_lr(opt, self.get_lr())

    def get_lr(self):
        if self.last < 0:
            return self.min_lr
        return self.min_lr + self.delta_lr * self._gamma()

    def _warmup_gamma(self):
        if self.warmup_type == 'log':
            return self.inverse_log_warm_up * math.log(self.last + 1)
        return self.last / self.warmup_num_steps

    def _gamma(self):
        if self.last < self.warmup_num_steps:
            return self._warmup_gamma()
        return 1.0

    def step(self):
        self.last += 1
        set_lr(self.opt, self.get_lr())


class WarmupDecayLR(WarmupLR):
    """Mirrors lr_schedules.WarmupDecayLR: WarmupLR, then linear decay to 0 at total_num_steps. Its warmup_max_lr
    defaults to 0.001, not to the optimizer's lr."""

    def __init__(self, opt, total_num_steps, warmup_min_lr=0.0, warmup_max_lr=0.001, warmup_num_steps=1000,
                 warmup_type='log', last_batch_iteration=-1):
        self.total_num_steps = total_num_steps
        super().__init__(opt, warmup_min_lr, warmup_max_lr, warmup_num_steps, warmup_type, last_batch_iteration)

    def _gamma(self):
        if self.last < self.warmup_num_steps:
            return self._warmup_gamma()
        return max(0.0, float(self.total_num_steps - self.last) /
                   float(max(1.0, self.total_num_steps - self.warmup_num_steps)))


class WarmupCosineLR:
    """Mirrors lr_schedules.WarmupCosineLR: the optimizer's lr times a ratio (warmup ramp, then clamped cosine)."""

    def __init__(self, opt, total_num_steps, warmup_min_ratio=0.0, warmup_num_steps=1000, cos_min_ratio=0.0001,
                 warmup_type='log', last_batch_iteration=-1):
        assert warmup_num_steps > 0
        self.opt = opt
        self.total_num_steps = total_num_steps
        self.last = last_batch_iteration
        self.cos_min_ratio = cos_min_ratio
        self.warmup_type = warmup_type
        self.warmup_min_ratio = warmup_min_ratio
        self.warmup_num_steps = max(2, warmup_num_steps)
        self.inverse_log_warm_up = 1.0 / math.log(self.warmup_num_steps)
        self.org_lr = opt.param_groups[0]['lr']
        if last_batch_iteration == -1:
            set_lr(opt, self.get_lr())

    def get_lr_ratio(self):
        if self.last < 0:
            return 0.0
        if self.last < self.warmup_num_steps:
            if self.warmup_type == 'log':
                ratio = self.inverse_log_warm_up * math.log(self.last + 1)
            else:
                ratio = self.last / self.warmup_num_steps
            return self.warmup_min_ratio + ratio * (1. - self.warmup_min_ratio)
        real_last_step = self.last - self.warmup_num_steps + 1
        real_total_steps = max(1, self.total_num_steps - self.warmup_num_steps)
        progress = min(1.0, real_last_step / real_total_steps)
        ratio = (1 + math.cos(math.pi * progress)) / 2
        return max(0.0, self.cos_min_ratio + (1. - self.cos_min_ratio) * ratio)

    def get_lr(self):
        if self.last < 0:
            return 0.0  # DeepSpeed's get_lr returns 0.0 before the first step, whatever warmup_min_ratio says
        return self.org_lr * self.get_lr_ratio()

    def step(self):
        self.last += 1
        set_lr(self.opt, self.get_lr())


SCHEDULES = {c.__name__: c for c in (LRRangeTest, OneCycle, WarmupLR, WarmupDecayLR, WarmupCosineLR)}


def run_schedule(name, base_lr, params, num_steps, has_betas=True, through_config=True):
    opt = FakeOptimizer(base_lr, has_betas)
    sched = SCHEDULES[name](opt, **params)
    lrs, moms, beta2s = [], [], []

    def record():
        group = opt.param_groups[0]
        lrs.append(group['lr'])
        betas = group['betas']
        moms.append(None if betas is UNTOUCHED else betas[0])
        beta2s.append(None if betas is UNTOUCHED else betas[1])

    record()
    for _ in range(num_steps):
        sched.step()
        record()
    case = {'type': name, 'base_lr': base_lr, 'params': params, 'optimizer_has_betas': has_betas, 'lr': lrs,
            'momentum': moms}
    if any(b is not None for b in beta2s):
        assert all(b in (None, 0.99) for b in beta2s)
        case['beta2'] = 0.99
    if not through_config:
        case['through_config'] = False  # outside zerotrain's config schema: tested with a SchedulerConfig only
    return case


def lr_cases():
    c = []
    # WarmupLR
    c.append(run_schedule('WarmupLR', 1e-3, {'warmup_min_lr': 0.0, 'warmup_max_lr': 0.01, 'warmup_num_steps': 100},
                          300))
    c.append(run_schedule('WarmupLR', 3e-4, {'warmup_min_lr': 1e-5, 'warmup_num_steps': 250,
                                             'warmup_type': 'linear'}, 400))
    c.append(run_schedule('WarmupLR', 2e-3, {'warmup_num_steps': 1}, 60))  # max(2, 1): two steps of ramp
    c.append(run_schedule('WarmupLR', 2e-3, {'warmup_num_steps': 1, 'warmup_type': 'linear'}, 60))
    c.append(run_schedule('WarmupLR', 5e-4, {'warmup_min_lr': 1e-4, 'warmup_max_lr': 7e-3, 'warmup_num_steps': 100,
                                             'last_batch_iteration': 37}, 200))
    c.append(run_schedule('WarmupLR', 5e-4, {'warmup_min_lr': 4e-3, 'warmup_max_lr': 1e-3, 'warmup_num_steps': 77,
                                             'warmup_type': 'linear'}, 200))
    c.append(run_schedule('WarmupLR', 1e-3, {}, 1200))  # every default: log over 1000 steps up to the optimizer lr
    # WarmupDecayLR
    c.append(run_schedule('WarmupDecayLR', 1e-2, {'total_num_steps': 500, 'warmup_num_steps': 100}, 600))
    c.append(run_schedule('WarmupDecayLR', 1e-2, {'total_num_steps': 300, 'warmup_num_steps': 50,
                                                  'warmup_min_lr': 1e-6, 'warmup_max_lr': 5e-3,
                                                  'warmup_type': 'linear'}, 400))
    c.append(run_schedule('WarmupDecayLR', 1e-2, {'total_num_steps': 40, 'warmup_num_steps': 100,
                                                  'warmup_max_lr': 2e-3, 'warmup_type': 'linear'}, 200))
    c.append(run_schedule('WarmupDecayLR', 1e-2, {'total_num_steps': 1000, 'warmup_num_steps': 200,
                                                  'warmup_max_lr': 3e-3, 'last_batch_iteration': 120}, 700))
    c.append(run_schedule('WarmupDecayLR', 1e-2, {'total_num_steps': 101, 'warmup_num_steps': 100,
                                                  'warmup_max_lr': 3e-3}, 300))  # a one-step decay window
    # WarmupCosineLR
    c.append(run_schedule('WarmupCosineLR', 1e-3, {'total_num_steps': 500, 'warmup_num_steps': 100}, 600))
    c.append(run_schedule('WarmupCosineLR', 6e-4, {'total_num_steps': 400, 'warmup_num_steps': 37,
                                                   'warmup_min_ratio': 0.1, 'cos_min_ratio': 0.05,
                                                   'warmup_type': 'linear'}, 500))
    c.append(run_schedule('WarmupCosineLR', 6e-4, {'total_num_steps': 50, 'warmup_num_steps': 80}, 200))
    c.append(run_schedule('WarmupCosineLR', 6e-4, {'total_num_steps': 300, 'warmup_num_steps': 1,
                                                   'warmup_min_ratio': 0.25}, 400))
    c.append(run_schedule('WarmupCosineLR', 2e-4, {'total_num_steps': 900, 'warmup_num_steps': 300,
                                                   'warmup_min_ratio': 0.01, 'cos_min_ratio': 0.0,
                                                   'last_batch_iteration': 250}, 800))
    # OneCycle
    c.append(run_schedule('OneCycle', 1e-3, {'cycle_min_lr': 1e-4, 'cycle_max_lr': 1e-2,
                                             'cycle_first_step_size': 100}, 500))
    c.append(run_schedule('OneCycle', 1e-3, {'cycle_min_lr': 2e-4, 'cycle_max_lr': 4e-3, 'cycle_first_step_size': 100,
                                             'cycle_second_step_size': 60, 'decay_step_size': 20,
                                             'decay_lr_rate': 0.5, 'decay_mom_rate': 0.1}, 400))
    c.append(run_schedule('OneCycle', 1e-3, {'cycle_min_lr': 1e-4, 'cycle_max_lr': 1e-3, 'cycle_first_step_size': 100,
                                             'cycle_first_stair_count': 4}, 300))
    c.append(run_schedule('OneCycle', 1e-3, {'cycle_min_lr': 1e-4, 'cycle_max_lr': 1e-3, 'cycle_first_step_size': 90,
                                             'cycle_second_step_size': 70, 'cycle_first_stair_count': 3,
                                             'cycle_second_stair_count': 5, 'decay_step_size': 15,
                                             'decay_lr_rate': 0.25, 'cycle_min_mom': 0.85,
                                             'cycle_max_mom': 0.95}, 400))
    c.append(run_schedule('OneCycle', 1e-3, {'cycle_min_lr': 1e-4, 'cycle_max_lr': 1e-3, 'cycle_first_step_size': 50,
                                             'cycle_second_step_size': 80, 'cycle_first_stair_count': 0,
                                             'cycle_second_stair_count': 7}, 300))
    c.append(run_schedule('OneCycle', 1e-3, {'cycle_min_lr': 1e-4, 'cycle_max_lr': 1e-3, 'cycle_first_step_size': 7,
                                             'cycle_second_step_size': 3, 'cycle_first_stair_count': 3,
                                             'cycle_second_stair_count': 2}, 200))
    c.append(run_schedule('OneCycle', 1e-3, {'cycle_min_lr': 1e-4, 'cycle_max_lr': 1e-3, 'cycle_first_step_size': 120,
                                             'cycle_momentum': False, 'decay_step_size': 10,
                                             'decay_lr_rate': 0.05}, 400))
    c.append(run_schedule('OneCycle', 1e-3, {'cycle_min_lr': 1e-4, 'cycle_max_lr': 1e-3, 'cycle_first_step_size': 80,
                                             'decay_step_size': 10, 'decay_lr_rate': 0.0,
                                             'decay_mom_rate': 0.02}, 300))  # momentum decays, lr does not
    c.append(run_schedule('OneCycle', 1e-3, {'cycle_min_lr': 3e-4, 'cycle_max_lr': 3e-3, 'cycle_first_step_size': 100,
                                             'cycle_second_step_size': 150, 'decay_step_size': 25,
                                             'decay_lr_rate': 0.3, 'decay_mom_rate': 0.05,
                                             'last_batch_iteration': 150}, 300))
    c.append(run_schedule('OneCycle', 1e-3, {'cycle_min_lr': 1e-4, 'cycle_max_lr': 1e-3, 'cycle_first_step_size': 64,
                                             'cycle_second_step_size': 0}, 300, through_config=False))
    c.append(run_schedule('OneCycle', 1e-3, {'cycle_min_lr': 1e-4, 'cycle_max_lr': 1e-3, 'cycle_first_step_size': 100,
                                             'decay_step_size': 10, 'decay_lr_rate': 0.1}, 300,
                          has_betas=False))  # SGD-like optimizer: DeepSpeed turns momentum cycling off
    # LRRangeTest
    c.append(run_schedule('LRRangeTest', 1e-3, {'lr_range_test_min_lr': 1e-4, 'lr_range_test_step_size': 50,
                                                'lr_range_test_step_rate': 0.5}, 300))
    c.append(run_schedule('LRRangeTest', 1e-3, {'lr_range_test_min_lr': 1e-3, 'lr_range_test_step_size': 40,
                                                'lr_range_test_step_rate': 2.0, 'lr_range_test_staircase': True},
                          300))
    c.append(run_schedule('LRRangeTest', 1e-3, {'lr_range_test_min_lr': 2e-5, 'lr_range_test_step_size': 25,
                                                'lr_range_test_step_rate': 3.0, 'lr_range_test_staircase': True,
                                                'last_batch_iteration': 99}, 300))
    c.append(run_schedule('LRRangeTest', 1e-3, {}, 300))
    return c


# ---------------------------------------------------------------------------------------------------------------
# Loss scalers
# ---------------------------------------------------------------------------------------------------------------


class AtMinimum(Exception):
    pass


class ZeroLossScaler:
    """Mirrors what the ZeRO optimizers (stage_1_and_2.py, stage3.py) get from CreateLossScaler: with fp16 and
    loss_scale 0, DynamicLossScaler(init_scale=2**initial_scale_power, scale_window=loss_scale_window,
    min_scale=min_loss_scale, delayed_shift=hysteresis, consecutive_hysteresis, raise_error_at_min_scale=True)
    (precision_config.dynamic_loss_scale_args always builds that dict); else a static LossScaler whose
    update_scale does nothing."""

    def __init__(self, fp16):
        self.dynamic = fp16.get('enabled', False) and fp16.get('loss_scale', 0) == 0
        if not fp16.get('enabled', False):
            self.cur_scale = 1.0
        elif not self.dynamic:
            self.cur_scale = fp16['loss_scale']
        else:
            self.cur_scale = 2**fp16.get('initial_scale_power', 16)
        self.cur_iter = 0
        self.last_overflow_iter = -1
        self.scale_window = fp16.get('loss_scale_window', 1000)
        self.min_scale = fp16.get('min_loss_scale', 1)
        self.delayed_shift = fp16.get('hysteresis', 2)
        self.cur_hysteresis = self.delayed_shift
        self.consecutive_hysteresis = fp16.get('consecutive_hysteresis', False)

    def update_scale(self, overflow):
        if not self.dynamic:  # LossScalerBase.update_scale: pass
            return
        # DynamicLossScaler.update_scale
        if overflow:
            if self.delayed_shift == 1 or self.cur_hysteresis == 1:
                if self.cur_scale == self.min_scale:
                    raise AtMinimum()
                self.cur_scale = max(self.cur_scale / 2.0, self.min_scale)
            else:
                self.cur_hysteresis -= 1
            self.last_overflow_iter = self.cur_iter
        else:
            if self.consecutive_hysteresis:
                self.cur_hysteresis = self.delayed_shift
            stable_interval = (self.cur_iter - self.last_overflow_iter) - 1
            if stable_interval > 0 and stable_interval % self.scale_window == 0:
                if not self.consecutive_hysteresis:
                    self.cur_hysteresis = self.delayed_shift
                self.cur_scale *= 2.0
        self.cur_iter += 1


class Fp16OptimizerLossScaler(ZeroLossScaler):
    """Mirrors FP16_Optimizer._update_scale (fused_optimizer.py; FP16_UnfusedOptimizer's is the same), the
    non-ZeRO fp16 path: LossScaleConfig gives the same initial scale, window and floor, but every overflow halves
    the scale (no hysteresis) and nothing is raised at the floor."""

    def update_scale(self, overflow):
        if self.dynamic:
            if overflow:
                self.cur_scale = max(self.cur_scale / 2.0, self.min_scale)
                self.last_overflow_iter = self.cur_iter
            else:
                stable_interval = (self.cur_iter - self.last_overflow_iter) - 1
                if stable_interval > 0 and stable_interval % self.scale_window == 0:
                    self.cur_scale *= 2.0
        self.cur_iter += 1


def run_scaler(name, fp16, zero, overflows):
    scaler = (ZeroLossScaler if zero else Fp16OptimizerLossScaler)(fp16)
    case = {'name': name, 'fp16': fp16, 'zero_optimizer': zero, 'initial_scale': scaler.cur_scale,
            'overflow': [int(o) for o in overflows], 'scale': [], 'hysteresis': [], 'last_overflow_iteration': [],
            'raises_at': None}
    for i, o in enumerate(overflows):
        try:
            scaler.update_scale(o)
        except AtMinimum:
            case['raises_at'] = i
            case['overflow'] = case['overflow'][:i + 1]
            break
        case['scale'].append(scaler.cur_scale)
        case['hysteresis'].append(scaler.cur_hysteresis)
        case['last_overflow_iteration'].append(scaler.last_overflow_iter)
        assert math.isfinite(scaler.cur_scale)
    return case


def bernoulli(seed, n, p):
    rng = random.Random(seed)
    return [rng.random() < p for _ in range(n)]


def bursts(seed, n, max_burst, max_gap):
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        out += [False] * rng.randint(0, max_gap) + [True] * rng.randint(1, max_burst)
    return out[:n]


def scaler_cases():
    c = []
    dyn = {'enabled': True}
    c.append(run_scaler('defaults_sparse_overflows', dyn, True, bernoulli(1, 3000, 0.002)))
    for zero in (True, False):
        tag = 'zero' if zero else 'fp16_optimizer'
        c.append(run_scaler(f'{tag}_window10_h2', {**dyn, 'loss_scale_window': 10, 'hysteresis': 2}, zero,
                            bernoulli(2, 600, 0.1)))
        c.append(run_scaler(f'{tag}_window10_h2_consecutive', {**dyn, 'loss_scale_window': 10, 'hysteresis': 2,
                                                               'consecutive_hysteresis': True}, zero,
                            bernoulli(2, 600, 0.1)))
    # Non-consecutive hysteresis stays spent until a full window passes: frequent overflows collapse the scale.
    c.append(run_scaler('zero_window10_h2_collapse', {**dyn, 'loss_scale_window': 10, 'hysteresis': 2}, True,
                        bernoulli(22, 600, 0.1)))
    c.append(run_scaler('h1_window7', {**dyn, 'loss_scale_window': 7, 'hysteresis': 1}, True,
                        bernoulli(12, 500, 0.1)))
    c.append(run_scaler('h1_window7_consecutive', {**dyn, 'loss_scale_window': 7, 'hysteresis': 1,
                                                   'consecutive_hysteresis': True}, True, bernoulli(12, 500, 0.1)))
    c.append(run_scaler('h3_bursts', {**dyn, 'loss_scale_window': 12, 'hysteresis': 3, 'initial_scale_power': 20},
                        True, bursts(4, 600, 4, 40)))
    c.append(run_scaler('h3_bursts_consecutive', {**dyn, 'loss_scale_window': 12, 'hysteresis': 3,
                                                  'consecutive_hysteresis': True, 'initial_scale_power': 20}, True,
                        bursts(4, 600, 4, 40)))
    c.append(run_scaler('window1', {**dyn, 'loss_scale_window': 1, 'hysteresis': 2, 'initial_scale_power': 8},
                        True, bernoulli(5, 600, 0.4)))
    # Window boundaries: the scale doubles on the (window + 1)-th clean update after the last overflow.
    c.append(run_scaler('window5_boundaries', {**dyn, 'loss_scale_window': 5, 'hysteresis': 1}, True,
                        [False] * 17 + [True] + [False] * 11 + [True, True] + [False] * 6 + [True] + [False] * 20))
    c.append(run_scaler('window5_boundaries_h2', {**dyn, 'loss_scale_window': 5, 'hysteresis': 2}, True,
                        [False] * 17 + [True] + [False] * 11 + [True, True] + [False] * 6 + [True] + [False] * 20))
    # The floor and DeepSpeed's error: overflow with the scale already at min_loss_scale and the hysteresis spent.
    c.append(run_scaler('min_scale_raises_h2', {**dyn, 'initial_scale_power': 3, 'hysteresis': 2}, True,
                        [True] * 20))
    c.append(run_scaler('min_scale_raises_h1', {**dyn, 'initial_scale_power': 4, 'hysteresis': 1,
                                                'min_loss_scale': 2}, True, [True] * 20))
    c.append(run_scaler('min_scale_consecutive_refill_then_raise', {**dyn, 'initial_scale_power': 2, 'hysteresis': 3,
                                                                    'consecutive_hysteresis': True},
                        True, [True] * 4 + [False, True] * 30 + [False] + [True] * 5))
    c.append(run_scaler('min_scale_not_power_of_two', {**dyn, 'initial_scale_power': 5, 'min_loss_scale': 3,
                                                       'loss_scale_window': 4, 'hysteresis': 1}, True,
                        [True] * 4 + [False] * 6 + [True] * 3 + [False, True] * 4 + [True] * 3))
    c.append(run_scaler('initial_below_min', {**dyn, 'initial_scale_power': 0, 'min_loss_scale': 4,
                                              'hysteresis': 1, 'loss_scale_window': 3}, True,
                        [True, False, False, False, False, True, True, False]))
    c.append(run_scaler('fp16_optimizer_stays_at_min', {**dyn, 'initial_scale_power': 3, 'loss_scale_window': 6},
                        False, [True] * 40 + [False] * 20 + bernoulli(6, 300, 0.5)))
    for zero in (True, False):
        tag = 'zero' if zero else 'fp16_optimizer'
        c.append(run_scaler(f'{tag}_static', {'enabled': True, 'loss_scale': 128, 'hysteresis': 1}, zero,
                            bernoulli(7, 300, 0.3)))
    c.append(run_scaler('fp16_disabled', {'enabled': False}, True, bernoulli(8, 200, 0.3)))
    return c


def write(name, cases):
    # One case per line: diffs of a regenerated file stay readable, and repr() of floats round-trips exactly.
    path = os.path.join(HERE, name)
    with open(path, 'w') as f:
        f.write('{"generator": "tests/golden/make_schedule_golden.py", "cases": [\n')
        f.write(',\n'.join(json.dumps(c, allow_nan=False, separators=(',', ':')) for c in cases))
        f.write('\n]}\n')
    print(f'wrote {path}: {len(cases)} cases')


if __name__ == '__main__':
    write('lr_schedules.json', lr_cases())
    write('loss_scaler.json', scaler_cases())
