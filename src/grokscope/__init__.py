"""grokscope: watch a small network learn a + b mod p, and measure what happens.

Names other than the errors and the version load on first use (lazy.py): a helper process that
draws a figure imports ``grokscope.llc.figures`` without torch."""

from .errors import CheckpointError, ConfigError, GrokscopeError
from .lazy import lazy_names
from .version import __version__

_OWNERS = {
    "PRESETS": "config",
    "MLPConfig": "config",
    "RunConfig": "config",
    "TaskConfig": "config",
    "TrainingConfig": "config",
    "build_config": "config",
    "Run": "run",
    "load_run": "run",
    "train": "training",
}
__all__ = [
    "__version__", "CheckpointError", "ConfigError", "GrokscopeError",
    "PRESETS", "MLPConfig", "RunConfig", "TaskConfig", "TrainingConfig", "build_config", "Run", "load_run", "train",
]
__getattr__, __dir__ = lazy_names(__name__, _OWNERS)
