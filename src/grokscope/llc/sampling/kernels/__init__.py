"""Sampler kernels, chosen by name. Adding one is a new module here plus one line in KERNELS: a class
with ``name``, ``Options`` (its settings, a KernelOptions) and ``from_options(options)``, and the
``init``/``step``/``terms`` of the Kernel protocol. Its settings reach SGLDConfig, the command line
and llc.json from its Options."""

from __future__ import annotations

from .base import ChainSettings, Kernel, KernelOptions, KernelState, StepTerms
from .constraints import Masked, OrthogonalToGradient, project_out, unit_directions
from .rmsprop_sgld import RMSpropSGLD
from .sgld import SGLD

KERNELS: dict[str, type] = {
    "sgld": SGLD,
    "rmsprop_sgld": RMSpropSGLD,
}


def option_owners() -> dict[str, str]:
    """Each kernel setting's name -> the kernel that owns it."""
    return {field: name for name, kernel in KERNELS.items() for field in kernel.Options.model_fields}


def build_kernel(cfg) -> Kernel:
    """The kernel named by ``cfg.sampler`` with its own settings (an SGLDConfig checked them)."""
    kernel = KERNELS[cfg.sampler]
    return kernel.from_options(kernel.Options(**cfg.kernel_options))


__all__ = [
    "KERNELS", "ChainSettings", "Kernel", "KernelOptions", "KernelState", "Masked", "OrthogonalToGradient", "RMSpropSGLD", "SGLD",
    "StepTerms", "build_kernel", "option_owners", "project_out", "unit_directions",
]
