"""Sampler kernels, chosen by name. Adding one is a new module here plus one line in KERNELS."""

from __future__ import annotations

from typing import Callable

from .base import ChainSettings, Kernel, KernelState, StepTerms
from .constraints import Masked, OrthogonalToGradient, project_out, unit_directions
from .rmsprop_sgld import RMSpropSGLD
from .sgld import SGLD

# name -> a factory taking the SGLD settings object (it reads the kernel's own settings from it)
KERNELS: dict[str, Callable[..., Kernel]] = {
    "sgld": lambda cfg: SGLD(),
    "rmsprop_sgld": lambda cfg: RMSpropSGLD(cfg.rmsprop_alpha, cfg.rmsprop_eps),
}


def build_kernel(cfg) -> Kernel:
    """The kernel named by ``cfg.sampler`` (an SGLDConfig, which checks the name against KERNELS)."""
    return KERNELS[cfg.sampler](cfg)


__all__ = [
    "KERNELS", "ChainSettings", "Kernel", "KernelState", "Masked", "OrthogonalToGradient", "RMSpropSGLD", "SGLD",
    "StepTerms", "build_kernel", "project_out", "unit_directions",
]
