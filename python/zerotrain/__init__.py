"""zerotrain: DeepSpeed's training engine in C++, for PyTorch and Hugging Face models.

Change one import and keep the DeepSpeed config:

    import zerotrain
    engine, optimizer, loader, scheduler = zerotrain.initialize(model=model, config="ds_config.json",
                                                                training_data=dataset)
    for batch in loader:
        loss = engine(batch)
        engine.backward(loss)
        engine.step()

The C++ engine (zerotrain._C) does the work: ZeRO stages 0-3, mixed precision, the optimizer and schedule of the
config, gradient communication, checkpoints. This package describes the module to it and forwards calls.
"""
import torch  # loads libtorch before the extension needs it

from . import _C
from ._C import ConfigError
from .comm import init_distributed
from .config import add_config_arguments
from .engine import ZeroTrainEngine, initialize
from . import comm, zero

__version__ = _C.__version__
engine_host_cpu_seconds = _C.engine_host_cpu_seconds
set_engine_host_accounting = _C.set_engine_host_accounting

__all__ = [
    "ConfigError",
    "ZeroTrainEngine",
    "add_config_arguments",
    "comm",
    "engine_host_cpu_seconds",
    "set_engine_host_accounting",
    "init_distributed",
    "initialize",
    "zero",
    "__version__",
]
