"""Figures of the analyses (matplotlib, headless). Each returns a Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


def bars(values, title: str, xlabel: str, ylabel: str, highlight=(), log: bool = False):
    fig, ax = plt.subplots(figsize=(8, 3.5))
    colours = ["C3" if k in highlight else "C0" for k in range(len(values))]
    ax.bar(range(len(values)), values, color=colours)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if log:
        ax.set_yscale("log")
    fig.tight_layout()
    return fig


def circles(coords: dict[int, np.ndarray], p: int, title: str = "mode circles", axes=None):
    """Scatter of each token in the plane of frequency k, coloured by j·k mod p."""
    keys = list(coords)
    fig = None
    if axes is None:
        fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.2), squeeze=False)
        axes = axes[0]
    for ax, k in zip(axes, keys):
        xy = np.asarray(coords[k])
        ax.scatter(xy[:, 0], xy[:, 1], c=(np.arange(p) * k) % p, cmap="hsv", s=14)
        ax.set_title(f"k = {k}", fontsize=9)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    if fig is not None:
        fig.suptitle(title)
        fig.tight_layout()
    return fig if fig is not None else axes[0].figure


def heatmap_over_training(steps, matrix, title: str, ylabel: str, colour_label: str, log: bool = False):
    """matrix [frequency, checkpoint] as an image, steps on the x axis."""
    fig, ax = plt.subplots(figsize=(9, 4))
    data = np.log10(np.maximum(matrix, 1e-12)) if log else matrix
    image = ax.imshow(data, aspect="auto", origin="lower", cmap="viridis",
                      extent=(steps[0], steps[-1], -0.5, matrix.shape[0] - 0.5))
    fig.colorbar(image, ax=ax, label=("log10 " if log else "") + colour_label)
    ax.set(title=title, xlabel="training step", ylabel=ylabel)
    fig.tight_layout()
    return fig


def lines_over_training(steps, series: dict[str, list], title: str, ylabel: str, log: bool = False, marks=None):
    fig, ax = plt.subplots(figsize=(8, 4))
    for label, values in series.items():
        ax.plot(steps, [np.nan if v is None else v for v in values], marker="o", ms=3, label=label)
    for label, value in (marks or {}).items():
        ax.axhline(value, ls="--", lw=0.8, color="grey")
        ax.text(steps[0], value, label, fontsize=7, va="bottom", color="grey")
    ax.set(title=title, xlabel="training step", ylabel=ylabel)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return fig
