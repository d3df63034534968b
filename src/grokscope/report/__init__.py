"""Reports: one self-contained HTML page per run or per sweep, built from stored results."""

from .build import build_run_report
from .sweep import build_sweep_report

__all__ = ["build_run_report", "build_sweep_report"]
