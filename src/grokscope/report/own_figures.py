"""Figures the report draws itself from stored results (cheap: no sampling, no training)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..analysis.stages import shade_stages


def training_curves(metrics: list[dict[str, float]], stages: dict | None = None):
    """Loss and accuracy over training; the stages shaded when given (analysis/stages.py)."""
    steps = [r["step"] for r in metrics]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    loss_ax.plot(steps, [r["train_loss"] for r in metrics], label="train")
    loss_ax.plot(steps, [r["test_loss"] for r in metrics], label="test")
    loss_ax.set(yscale="log", xlabel="training step", ylabel="cross-entropy", title="loss")
    acc_ax.plot(steps, [r["train_acc"] for r in metrics], label="train")
    acc_ax.plot(steps, [r["test_acc"] for r in metrics], label="test")
    acc_ax.set(xlabel="training step", ylabel="accuracy", title="accuracy", ylim=(-0.02, 1.02))
    for ax in (loss_ax, acc_ax):
        ax.legend()
    if stages:
        shade_stages([loss_ax, acc_ax], stages)
    fig.tight_layout()
    return fig


def sgld_traces(llc: dict, count: int = 4):
    """Thinned minibatch-loss traces of every chain at a few checkpoints, with L_n(w*) dashed."""
    entries = [e for e in llc["checkpoints"] if e["loss_trace"]]  # entries not sampled (non-finite weights) have none
    if not entries:
        raise ValueError("no checkpoint has a loss trace")
    chosen = [entries[round(i * (len(entries) - 1) / max(count - 1, 1))] for i in range(min(count, len(entries)))]
    fig, axes = plt.subplots(1, len(chosen), figsize=(3.3 * len(chosen), 3), squeeze=False)
    for ax, entry in zip(axes[0], chosen):
        for trace in entry["loss_trace"]:
            ax.plot(entry["trace_steps"], [np.nan if v is None else v for v in trace], lw=0.8)
        if entry["init_loss"] is not None:
            ax.axhline(entry["init_loss"], ls="--", color="k", lw=0.8)
        if entry.get("burn_in") is not None:
            ax.axvline(entry["burn_in"], color="grey", lw=0.6)
        ax.set(title=f"step {entry['step']} ({entry.get('status', 'ok')})", xlabel="SGLD step")
    axes[0][0].set_ylabel("minibatch loss")
    fig.suptitle("SGLD loss traces per chain (dashed: L_n(w*); grey: end of burn-in)")
    fig.tight_layout()
    return fig


def step_metrics(llc: dict, count: int = 4):
    """Norms of each SGLD step's terms per chain (thin lines) at a few checkpoints: what moves a
    chain, and how far it has gone from w* (REFERENCE §7)."""
    entries = [e for e in llc["checkpoints"] if e.get("step_metrics")]
    chosen = [entries[round(i * (len(entries) - 1) / max(count - 1, 1))] for i in range(min(count, len(entries)))]
    fig, axes = plt.subplots(1, len(chosen), figsize=(3.3 * len(chosen), 3.2), squeeze=False)
    colours = dict(gradient="C0", localisation="C1", weight_decay="C2", noise="C3", distance="k")
    for ax, entry in zip(axes[0], chosen):
        metrics = entry["step_metrics"]
        for name, colour in colours.items():
            for c, values in enumerate(metrics[name]):
                series = [np.nan if v is None or v <= 0 else v for v in values]
                ax.plot(metrics["steps"], series, color=colour, lw=0.7, alpha=0.8, label=name if c == 0 else None)
        ax.set(title=f"step {entry['step']}", xlabel="SGLD step", yscale="log")
    axes[0][0].set_ylabel("norm per chain")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle("SGLD step terms: |gradient|, |localisation|, |weight decay|, |noise| and |w − w*|")
    fig.tight_layout()
    return fig


def sample_pca(samples: torch.Tensor, losses: torch.Tensor, step: str):
    """2-D PCA of saved SGLD samples [S, C, P] (all chains pooled), coloured by their loss."""
    points = samples.reshape(-1, samples.shape[-1]).double()
    values = losses.reshape(-1).double()
    keep = torch.isfinite(values)
    points, values = points[keep], values[keep]
    centred = points - points.mean(0)
    _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
    coords = centred @ vh[:2].T
    explained = (singular[:2] ** 2 / (singular**2).sum()).tolist()
    chains = torch.arange(samples.shape[1]).repeat(samples.shape[0])[keep]
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    image = ax.scatter(coords[:, 0], coords[:, 1], c=values, cmap="viridis", s=18)
    for c in chains.unique():
        mask = chains == c
        ax.plot(coords[mask, 0], coords[mask, 1], lw=0.4, color="grey", alpha=0.5)
    fig.colorbar(image, ax=ax, label="minibatch loss")
    ax.set(xlabel=f"PC1 ({100 * explained[0]:.0f}%)", ylabel=f"PC2 ({100 * explained[1]:.0f}%)",
           title=f"SGLD samples around the checkpoint at step {step}")
    fig.tight_layout()
    return fig
