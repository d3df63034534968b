"""Making and saving matplotlib figures (atomic). No backend is forced: matplotlib picks a headless
one where there is no display, and a notebook keeps its own. matplotlib is imported on first use."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .atomic import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(**kwargs) -> Figure:
    """A figure to draw on: pyplot's where a session may show it (pyplot or IPython loaded, as in a
    notebook), else a plain ``Figure``, which spares the command line pyplot's import."""
    if "matplotlib.pyplot" in sys.modules or "IPython" in sys.modules:
        import matplotlib.pyplot as plt

        return plt.figure(**kwargs)
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def save_figure(fig: Figure, path: Path) -> None:
    """Write ``fig`` to ``path`` as PNG atomically (and close it, if pyplot holds it)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    if fig.canvas.manager is not None:
        import matplotlib.pyplot as plt

        plt.close(fig)
    atomic_write_bytes(Path(path), buffer.getvalue())
