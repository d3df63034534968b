"""Local learning coefficient estimation with vectorised SGLD (REFERENCE §2-3).

Layers, each importing only those below it: sampling/ (the loop, kernels, observers, noise),
diagnostics/ (convergence, settledness, status), estimator.py (sampling and summary at given
settings), tuning/ (the step size from the data), runs/ (a run's checkpoints, refined LLCs),
api.py (estimate_llc, run_llc) and validation/ (known answers). config.py, result.py and
figures.py are shared by all.

The names load on first use (../lazy.py): ``grokscope.llc.figures`` draws without importing torch."""

from ..lazy import lazy_names

__all__ = ["CheckpointLLC", "LLCResult", "SGLDConfig", "UserObserver", "calibrate_llc", "estimate_llc", "run_llc", "sgld_config", "true_llc_dln"]
__getattr__, __dir__ = lazy_names(__name__, {
    "CheckpointLLC": "result",
    "LLCResult": "result",
    "SGLDConfig": "config",
    "UserObserver": "sampling.observers",
    "calibrate_llc": "tuning.calibrate",
    "estimate_llc": "api",
    "run_llc": "api",
    "sgld_config": "config",
    "true_llc_dln": "validation.truth",
})
