"""DeepSpeed's monitors from Python: `engine.monitor` (MonitorMaster), and the Weights & Biases ("wandb") and Comet
("comet") clients.

The C++ engine writes csv_monitor and tensorboard itself; wandb and comet log through their Python clients, so the
engine hands rank 0's events to the clients' `write_events` (EngineOptions::monitor_sink). As in DeepSpeed
(monitor/wandb.py, monitor/comet.py): rank 0 starts the run at initialize, an event is (name, value, global samples),
wandb logs each at its sample count as the step, comet logs a metric again only after `samples_log_interval` more
samples.
"""

import importlib.util
import weakref

import torch
import torch.distributed as dist

_CLIENTS = (("wandb", "wandb"), ("comet", "comet_ml"))  # (config section, client package)


def _installed(module):
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module set to None in sys.modules, or without a spec
        return False


class WandbMonitor:
    def __init__(self, cfg):
        import wandb

        self._wandb = wandb
        wandb.init(project=cfg.get("project") or "deepspeed", group=cfg.get("group"), entity=cfg.get("team"))

    def write_events(self, events):
        for name, value, step in events:
            self._wandb.log({name: value}, step=step)


class CometMonitor:
    def __init__(self, cfg):
        import comet_ml

        interval = cfg.get("samples_log_interval")
        self.experiment = comet_ml.start(api_key=cfg.get("api_key"), project=cfg.get("project"),
                                         workspace=cfg.get("workspace"), experiment_key=cfg.get("experiment_key"),
                                         mode=cfg.get("mode"), online=cfg.get("online"))
        if cfg.get("experiment_name") is not None:
            self.experiment.set_name(cfg["experiment_name"])
        self._interval = 100 if interval is None else int(interval)
        self._last_logged = {}  # name -> the samples at which it was last logged

    def write_events(self, events):
        for name, value, step in events:
            last = self._last_logged.get(name)
            if last is None or step - last >= self._interval:
                self._last_logged[name] = step
                self.experiment.log_metric(name, value, step=step)


class Clients:
    """The wandb / comet clients of an effective config: started on rank 0 only (elsewhere there is nothing to log
    to, as in DeepSpeed); `write_events` is the sink the C++ engine calls with rank 0's events."""

    def __init__(self, monitors):
        self._monitors = monitors

    def write_events(self, events):
        for monitor in self._monitors:
            monitor.write_events(events)


def start_clients(effective, rank, device):
    """The Clients of `effective` (None when neither wandb nor comet is enabled). Every rank checks that the client
    packages are installed (an ImportError naming the key, alike on every rank); rank 0 starts them, and when that
    fails every rank raises (rank 0 its client's error), so that no rank waits in the engine's start-up collectives
    for one that left."""
    wanted = [(section, module) for section, module in _CLIENTS if (effective.get(section) or {}).get("enabled")]
    if not wanted:
        return None
    for section, module in wanted:
        if not _installed(module):
            raise ImportError(f"{section}.enabled = true: the {module} package is not installed; pip install {module}, "
                              f"or set {section}.enabled to false")
    monitors, error = [], None
    if rank == 0:
        try:
            for section, _ in wanted:
                cls = WandbMonitor if section == "wandb" else CometMonitor
                monitors.append(cls(effective[section]))
        except Exception as e:  # reported on every rank below
            error = e
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        failed = torch.tensor([0.0 if error is None else 1.0], device=device)
        dist.all_reduce(failed)
        if error is None and failed.item() > 0:
            raise RuntimeError(f"rank 0 could not start the {' / '.join(s for s, _ in wanted)} monitor (its error is in "
                               "rank 0's output)")
    if error is not None:
        raise error
    return Clients(monitors)


class MonitorMaster:
    """`engine.monitor`, DeepSpeed's MonitorMaster: `enabled` when any of tensorboard, csv_monitor, wandb and comet is;
    `write_events([(name, value, samples), ...])` writes a program's own events to every enabled monitor on rank 0."""

    def __init__(self, engine, effective):
        self.enabled = any((effective.get(s) or {}).get("enabled") for s in ("tensorboard", "csv_monitor", "wandb",
                                                                              "comet"))
        self._engine = weakref.ref(engine)  # engine.monitor must not keep the engine alive

    def write_events(self, event_list):
        engine = self._engine()
        if engine is None or engine._engine is None:
            raise RuntimeError("engine.monitor.write_events: the engine has been released")
        engine._engine.write_monitor_events([(str(name), float(value), int(step)) for name, value, step in event_list])
