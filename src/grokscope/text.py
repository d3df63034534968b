"""Numbers as text for the CLI's tables and the calibration's evidence."""

from __future__ import annotations


def number(value: float | None, spec: str) -> str:
    """``value`` formatted by ``spec``; a missing value (None) reads as nan, as a missing float would."""
    return format(float("nan") if value is None else value, spec)
