"""Saving matplotlib figures (atomic). No backend is forced: matplotlib picks a headless one where
there is no display, and a notebook keeps its own."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib.pyplot as plt

from .store import atomic_write_bytes


def save_figure(fig: plt.Figure, path: Path) -> None:
    """Write ``fig`` to ``path`` as PNG atomically and close it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(Path(path), buffer.getvalue())
