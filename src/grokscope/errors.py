"""User-facing errors: each carries a message a researcher can act on, never a deep traceback."""


class GrokscopeError(Exception):
    """Base class for errors the CLI reports as one clear line."""


class ConfigError(GrokscopeError, ValueError):
    """A configuration value is out of range, unknown, or inconsistent."""


class CheckpointError(GrokscopeError):
    """A checkpoint file is missing, truncated, or does not fit the model."""


class RunLockedError(GrokscopeError):
    """Another process is writing the same run directory."""


class TrainingDivergedError(GrokscopeError):
    """The training loss became non-finite: the run stops there and records the step."""


class WriteError(GrokscopeError):
    """A result cannot be written where it must go (checked before anything is computed)."""
