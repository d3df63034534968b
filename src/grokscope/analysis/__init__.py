"""Fourier anatomy, progress measures, Hessian spectrum and Pizza/Clock circuits (REFERENCE §4-5)."""

from .analyze import RunAnalysis, analyze_run, verdict_summary
from .figures import save_analysis
from .run_stages import save_stages
from .single import (
    circuit,
    fourier_modes,
    hessian_spectrum,
    mode_ablation,
    mode_circles,
    progress,
)

__all__ = [
    "RunAnalysis", "analyze_run", "save_analysis", "save_stages", "verdict_summary",
    "circuit", "fourier_modes", "hessian_spectrum", "mode_ablation", "mode_circles", "progress",
]
