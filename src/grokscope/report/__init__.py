"""Reports: one self-contained HTML page per run, built from stored results."""

from .build import build_run_report

__all__ = ["build_run_report"]
