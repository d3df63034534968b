"""Local learning coefficient estimation with vectorised SGLD (REFERENCE §2-3)."""

from .calibrate import calibrate_llc
from .config import SGLDConfig, sgld_config
from .estimate import estimate_llc
from .result import CheckpointLLC, LLCResult
from .truth import true_llc_dln

__all__ = ["CheckpointLLC", "LLCResult", "SGLDConfig", "calibrate_llc", "estimate_llc", "sgld_config", "true_llc_dln"]
