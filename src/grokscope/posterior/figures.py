"""The figures of `grokscope posterior`, drawn from results/posterior.json and its arrays. Points and
panels from chains whose LLC estimate is not ok are drawn hollow or titled with their status."""

from __future__ import annotations

import numpy as np
import torch

from ..plotting import new_figure


def _chosen(stored: dict) -> list[dict]:
    """The checkpoints the matrix figures show: the λ̂ peak and the last (the first too when distinct)."""
    rows = [r for r in stored["checkpoints"] if r["draws"]]
    if not rows:
        raise ValueError("no checkpoint has posterior draws")
    peak = max((r for r in rows if r["llc"] is not None), key=lambda r: r["llc"], default=rows[-1])
    return [r for r in rows if r["step"] in {rows[0]["step"], peak["step"], rows[-1]["step"]}]


def _series(ax, rows: list[dict], key: str, label: str, color: str) -> None:
    """One summary over training: a line, filled markers where the status is ok, hollow where not."""
    kept = [r for r in rows if r.get(key) is not None]
    x, y = [r["step"] for r in kept], [r[key] for r in kept]
    ax.plot(x, y, "-", color=color, label=label)
    for filled in (True, False):
        points = [(xi, yi) for xi, yi, r in zip(x, y, kept) if (r["status"] == "ok") == filled]
        if points:
            ax.plot(*zip(*points), "o", color=color, mfc=color if filled else "white")


def posterior_over_training(stored: dict, arrays: dict[str, torch.Tensor]):
    """Loss gain of training vs held-out pairs, and the share of the loss kernel's structure that is
    a function of (a + b) mod p or of (a − b) mod p, over training."""
    fig = new_figure(figsize=(10, 3.8))
    gain_ax, share_ax = fig.subplots(1, 2)
    rows = stored["checkpoints"]
    _series(gain_ax, rows, "loss_gain_trained", "training pairs", "C0")
    _series(gain_ax, rows, "loss_gain_held_out", "held-out pairs", "C1")
    gain_ax.set(xlabel="training step", ylabel="mean E[ℓ_i] − ℓ_i(w*)", title="posterior loss gain", yscale="symlog")
    _series(share_ax, rows, "kernel_share_sum", "(a + b) mod p", "C2")
    _series(share_ax, rows, "kernel_share_difference", "(a − b) mod p", "C3")
    _series(share_ax, rows, "kernel_share_chance", "chance (shuffled classes)", "0.6")
    share_ax.set(xlabel="training step", ylabel="share of variance", title="loss-kernel structure explained by", yscale="log")
    for ax in (gain_ax, share_ax):
        ax.legend(fontsize=8)
    fig.suptitle("hollow: the LLC estimate of the same chains is not ok", fontsize=9)
    fig.tight_layout()
    return fig


def posterior_kernel(stored: dict, arrays: dict[str, torch.Tensor]):
    """The loss kernel's correlation form averaged over blocks of pairs with equal (a + b) mod p
    (top) and equal (a − b) mod p (bottom), at the first checkpoint, the λ̂ peak and the last."""
    chosen = _chosen(stored)
    fig = new_figure(figsize=(3.4 * len(chosen), 6.4))
    axes = np.atleast_2d(fig.subplots(2, len(chosen), squeeze=False))
    for col, row in enumerate(chosen):
        for r, (key, name) in enumerate((("kernel_by_sum", "a + b"), ("kernel_by_difference", "a − b"))):
            block = arrays[f"{key}/{row['step']}"].numpy()
            limit = float(np.nanmax(np.abs(block))) or 1.0
            image = axes[r, col].imshow(block, cmap="RdBu_r", vmin=-limit, vmax=limit)
            axes[r, col].set(xlabel=f"({name}) mod p", ylabel=f"({name}) mod p")
            fig.colorbar(image, ax=axes[r, col], fraction=0.046)
        axes[0, col].set_title(f"step {row['step']} ({row['status']})", fontsize=9)
    fig.suptitle(f"loss kernel (correlation), block means\nover {stored['settings'].get('kernel_pairs', 'all')} pairs", fontsize=10)
    fig.tight_layout()
    return fig


def posterior_susceptibility(stored: dict, arrays: dict[str, torch.Tensor]):
    """χ of each part (rows; whole model, then each component alone) to each data class (columns),
    at the λ̂ peak and at the end; a dot marks a χ within two Monte-Carlo errors of zero."""
    chosen = _chosen(stored)[-2:]
    classes, parts = stored["classes"], stored["parts"]
    fig = new_figure(figsize=(max(8, 0.32 * len(classes)), 2.2 + 1.3 * len(parts) * len(chosen)))
    axes = fig.subplots(len(chosen), 1, squeeze=False)[:, 0]
    for ax, row in zip(axes, chosen):
        matrix = arrays[f"susceptibility/{row['step']}"].numpy()
        limit = float(np.nanmax(np.abs(matrix))) if np.isfinite(matrix).any() else 1.0
        image = ax.imshow(matrix, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
        errors = arrays.get(f"susceptibility_mcse/{row['step']}")
        if errors is not None:
            near_zero = np.nonzero(np.abs(matrix) < 2 * errors.numpy())
            ax.scatter(near_zero[1], near_zero[0], s=4, c="0.3", marker=".", label="|χ| < 2 MCSE")
        status = [row["susceptibility"][part]["status"] for part in parts]
        ax.set_yticks(range(len(parts)), [p if s == "ok" else f"{p} ({s})" for p, s in zip(parts, status)], fontsize=8)
        ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=6)
        ax.set_title(f"susceptibility χ at step {row['step']} (whole model: {row['status']})", fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.03)
    fig.tight_layout()
    return fig


FIGURES = {"posterior_over_training": posterior_over_training, "posterior_kernel": posterior_kernel,
           "posterior_susceptibility": posterior_susceptibility}
