"""grokscope: watch a small network learn a + b mod p, and measure what happens."""

from .config import (
    PRESETS,
    MLPConfig,
    RunConfig,
    TaskConfig,
    TrainingConfig,
    build_config,
)
from .errors import CheckpointError, ConfigError, GrokscopeError
from .run import Run, load_run
from .training import train
from .version import __version__

__all__ = [
    "__version__",
    "PRESETS",
    "CheckpointError",
    "ConfigError",
    "GrokscopeError",
    "MLPConfig",
    "Run",
    "RunConfig",
    "TaskConfig",
    "TrainingConfig",
    "build_config",
    "load_run",
    "train",
]
