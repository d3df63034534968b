"""Local learning coefficient estimation with vectorised SGLD (REFERENCE §2-3).

The names load on first use (../lazy.py): ``grokscope.llc.curve`` draws without importing torch."""

from ..lazy import lazy_names

__all__ = ["CheckpointLLC", "LLCResult", "SGLDConfig", "calibrate_llc", "estimate_llc", "sgld_config", "true_llc_dln"]
__getattr__, __dir__ = lazy_names(__name__, {
    "CheckpointLLC": "result",
    "LLCResult": "result",
    "SGLDConfig": "config",
    "calibrate_llc": "calibrate",
    "estimate_llc": "estimate",
    "sgld_config": "config",
    "true_llc_dln": "truth",
})
