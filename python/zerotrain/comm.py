"""The process group the C++ engine communicates through: the user's torch.distributed group when there is one,
else one made here from the launcher's environment, as deepspeed.init_distributed does."""
import atexit
import datetime
import os
import sys
import time
import types
import warnings

import torch
import torch.distributed as dist
# torch.distributed.nn.functional takes `group=group.WORLD` as a default argument, evaluated when it is first
# imported: imported after init_process_group (torch.distributed._shard imports it; transformers imports that when it
# builds a model), it keeps the default group alive after destroy_process_group. Imported now, before any group
# exists, its defaults are None (the default group at call time). _shutdown releases such captures made elsewhere.
import torch.distributed.nn  # noqa: F401

_DEFAULT_TIMEOUT = datetime.timedelta(minutes=30)  # DeepSpeed's default


_EXIT_KEY = "zerotrain/exited"
_EXIT_WAIT_S = 30.0


def _release_captured_groups():
    """Drops the references that module-level functions hold, as default arguments, to process groups already
    destroyed; returns how many.

    A function defined as `def f(..., group=dist.group.WORLD)` in a module imported after init_process_group holds
    the default group for the life of the program. Its gloo backend then outlives destroy_process_group, and its
    worker threads live on into interpreter finalization: one that finishes a collective then (and releases a tensor
    owned by a Python object) needs the GIL, and Python ends such a thread with pthread_exit, which aborts the
    process ("terminate called without an active exception"; seen in CI at the exit of Hugging Face workers, where
    transformers had imported torch.distributed.nn.functional after the group was made). A destroyed group is
    useless to those functions, so the default becomes None (the default group at call time)."""
    live = {id(pg) for pg in dist.distributed_c10d._world.pg_map}
    released = 0

    def dead(v):
        return isinstance(v, dist.ProcessGroup) and id(v) not in live

    def scrub(fn):
        nonlocal released
        defaults = fn.__defaults__
        if defaults and any(dead(v) for v in defaults):
            released += sum(dead(v) for v in defaults)
            fn.__defaults__ = tuple(None if dead(v) else v for v in defaults)
        kw = fn.__kwdefaults__
        if kw and any(dead(v) for v in kw.values()):
            released += sum(dead(v) for v in kw.values())
            fn.__kwdefaults__ = {k: (None if dead(v) else v) for k, v in kw.items()}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some modules' attributes warn when touched (torch.distributed.reduce_op)
        for module in list(sys.modules.values()):
            try:
                namespace = getattr(module, "__dict__", None)
                if not isinstance(namespace, dict):
                    continue
                for value in list(namespace.values()):
                    if isinstance(value, types.FunctionType):
                        scrub(value)
                    elif isinstance(value, type) and value.__module__ == getattr(module, "__name__", None):
                        for member in list(vars(value).values()):
                            if isinstance(member, (staticmethod, classmethod)):
                                member = member.__func__
                            if isinstance(member, types.FunctionType):
                                scrub(member)
            except Exception:  # an odd object in sys.modules (a lazy proxy): nothing of ours to release there
                continue
    return released


def _shutdown():
    """At exit, for a process group made by init_distributed: release the engines that use it, destroy it (atexit
    runs this before the handlers registered earlier, torch's among them), and release what still holds a
    destroyed group (_release_captured_groups), so that its gloo threads are joined before the interpreter is
    finalized.

    Rank 0's process hosts the rendezvous store (a TCPStore) that every rank's group was built on; every rank reports
    its teardown in the store, and rank 0 leaves only when all have (or after _EXIT_WAIT_S), so that no rank loses
    the store while it tears its group down."""
    from .engine import release_engines
    release_engines()
    if not dist.is_initialized():
        _release_captured_groups()  # the script destroyed its group itself
        return
    world, rank = dist.get_world_size(), dist.get_rank()
    store = dist.distributed_c10d._get_default_store() if world > 1 else None
    dist.destroy_process_group()
    _release_captured_groups()
    if store is None:
        return
    try:
        store.add(_EXIT_KEY, 1)
        if rank == 0:
            deadline = time.monotonic() + _EXIT_WAIT_S
            while store.add(_EXIT_KEY, 0) < world and time.monotonic() < deadline:
                time.sleep(0.005)
    except Exception:  # a rank whose store is already gone has nothing left to protect
        pass


def _default_backend():
    return "nccl" if torch.cuda.is_available() else "gloo"


def init_distributed(dist_backend=None, timeout=_DEFAULT_TIMEOUT, init_method=None, rank=-1, world_size=-1):
    """Initializes torch.distributed unless it already is (DeepSpeed's init_distributed).

    Reads RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT as torchrun, deepspeed and `zerotrain launch` set them
    (OMPI_COMM_WORLD_* under mpirun). Without any of them, a single-process group is made. The backend is nccl
    when CUDA is available, else gloo.
    """
    if dist.is_initialized():
        return
    backend = dist_backend or _default_backend()
    if backend not in ("nccl", "gloo"):
        raise ValueError(f"dist_backend {backend!r} is not supported; allowed: 'nccl', 'gloo'")
    env = os.environ
    if "RANK" not in env and "OMPI_COMM_WORLD_RANK" in env:
        env["RANK"] = env["OMPI_COMM_WORLD_RANK"]
        env["WORLD_SIZE"] = env["OMPI_COMM_WORLD_SIZE"]
        env["LOCAL_RANK"] = env.get("OMPI_COMM_WORLD_LOCAL_RANK", "0")
        env.setdefault("MASTER_ADDR", "127.0.0.1")
        env.setdefault("MASTER_PORT", "29500")
    if backend == "nccl":
        torch.cuda.set_device(int(env.get("LOCAL_RANK", "0")))
    if init_method is None and rank < 0 and "RANK" not in env:
        # One process and no launcher: a group of one, without any network rendezvous.
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1, timeout=timeout)
        atexit.register(_shutdown)
        return
    for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        if init_method is None and rank < 0 and var not in env:
            raise RuntimeError(f"init_distributed: environment variable {var} is not set (start the script with "
                               "`zerotrain launch`, torchrun or deepspeed, or initialize torch.distributed yourself)")
    kwargs = {"timeout": timeout}
    if init_method is not None:
        kwargs["init_method"] = init_method
    if rank >= 0:
        kwargs["rank"] = rank
    if world_size >= 0:
        kwargs["world_size"] = world_size
    dist.init_process_group(backend, **kwargs)
    atexit.register(_shutdown)


def current_group():
    """(group name for the C++ engine, torch device this rank trains on) of the default process group."""
    group = dist.distributed_c10d._get_default_group()
    backend = dist.get_backend(group)
    if backend == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    elif backend == "gloo":
        device = torch.device("cpu")
    else:
        raise ValueError(f"torch.distributed backend {backend!r} is not supported by zerotrain; allowed: nccl "
                         "(CUDA tensors), gloo (CPU tensors)")
    return group.group_name, device


# --- DeepSpeed's communication logger (the `comms_logger` config section; include/zerotrain/comms_logging.h) ---

def log_summary(show_straggler=False, return_dict=False):
    """Prints, on rank 0, the collectives the engine issued while comms_logger was enabled, by operation and
    message size: count, total and average latency (ms), algorithm and bus bandwidth (Gbps), as
    deepspeed.comm.log_summary does. With show_straggler also each record's latency every rank agrees on (the
    minimum over ranks) and what this rank waited beyond it. Every rank must call it. With return_dict, returns
    DeepSpeed's dictionary: {"summary": {op: {msg_bytes: {...}}}, "straggler_analysis": ... or None,
    "metadata": {...}}."""
    from zerotrain import _C
    rows = _C.comms_log_summary(bool(show_straggler), True)
    if not return_dict:
        return None
    import datetime as _dt
    summary, straggler = {}, ({} if show_straggler else None)
    for r in rows:
        summary.setdefault(r["op"], {})[r["msg_bytes"]] = {
            "count": r["count"], "total_latency_ms": r["total_latency_ms"], "avg_latency_ms": r["avg_latency_ms"],
            "tput_avg_gbps": r["tput_avg_gbps"], "busbw_avg_gbps": r["busbw_avg_gbps"],
            "msg_size_bytes": r["msg_bytes"], "msg_size_str": r["msg_size_str"]}
        if show_straggler:
            straggler.setdefault(r["op"], {})[r["msg_bytes"]] = {
                "count": r["count"], "total_comm_lat_ms": r["total_comm_lat_ms"],
                "total_straggler_ms": r["total_straggler_ms"], "avg_comm_lat_ms": r["avg_comm_lat_ms"],
                "avg_straggler_ms": r["avg_straggler_ms"], "msg_size_bytes": r["msg_bytes"],
                "msg_size_str": r["msg_size_str"]}
    return {"summary": summary, "straggler_analysis": straggler,
            "metadata": {"world_size": dist.get_world_size() if dist.is_initialized() else 1,
                         "rank": dist.get_rank() if dist.is_initialized() else 0,
                         "timestamp": _dt.datetime.now().isoformat()}}


def reset_log():
    """Forgets what comms_logger recorded (deepspeed.comm.reset_log): the next log_summary starts afresh."""
    from zerotrain import _C
    _C.comms_log_reset()

