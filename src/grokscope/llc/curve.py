"""Figures of LLC results (matplotlib, no display needed)."""

from __future__ import annotations

import matplotlib.pyplot as plt


def plot_llc(result, metrics: list[dict[str, float]] | None = None):
    """λ̂ against the training step with error bars, and train/test loss on a second axis
    (the original study's plot)."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    kept = [e for e in result.entries if e.llc_mean is not None]
    xs = [e.step if e.step is not None else e.checkpoint_id for e in kept]
    ax.errorbar(xs, [e.llc_mean for e in kept], yerr=[e.llc_std or 0.0 for e in kept], fmt="o-", color="C0", capsize=3, label="LLC λ̂")
    ax.set_xlabel("training step" if kept and kept[0].step is not None else "checkpoint")
    ax.set_ylabel("λ̂ (LLC)", color="C0")
    if metrics:
        twin = ax.twinx()
        steps = [r["step"] for r in metrics]
        twin.plot(steps, [r["train_loss"] for r in metrics], color="C1", label="train loss")
        twin.plot(steps, [r["test_loss"] for r in metrics], color="C2", label="test loss")
        twin.set_yscale("log")
        twin.set_ylabel("loss")
        twin.legend(loc="center right")
    ax.legend(loc="upper left")
    settings = result.settings
    ax.set_title(
        f"LLC over training (nβ={settings['nbeta']:.4g} [{settings['nbeta_convention']}], "
        f"ε={settings['epsilon']}, γ={settings['gamma']}, {settings['chains']} chains)"
    )
    fig.tight_layout()
    return fig
