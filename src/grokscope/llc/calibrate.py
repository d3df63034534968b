"""Choosing SGLD settings: a grid over ε and nβ (and γ) with λ̂ and health flags per cell.

The field's practice (REFERENCE §2): estimates should be flat across a range of ε, loss traces
should settle above L_n(w*) without diverging, and chains should agree. We recommend the largest
healthy ε in the flat region at the default nβ.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping

import numpy as np
import torch
from torch import nn

from ..run import Run
from .config import SGLDConfig
from .estimate import estimate_llc
from .objective import LossFn
from .stored import select_checkpoints

DEFAULT_EPSILONS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
DEFAULT_NBETA_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)
FLAT_TOLERANCE = 0.15  # λ̂ within 15% of its neighbours counts as flat


@dataclass
class Cell:
    epsilon: float
    nbeta: float
    gamma: float
    llc_mean: float | None
    llc_std: float | None
    r_hat: float | None
    frac_below_init: float | None
    diverged_chains: int
    flags: list[str]

    @property
    def healthy(self) -> bool:
        return not self.flags


def health_flags(entry) -> list[str]:
    """Warnings for one checkpoint's estimate (empty when it looks healthy)."""
    flags = []
    if entry.llc_mean is None or entry.diverged_chains:
        flags.append("diverged")
    else:
        if entry.llc_mean <= 0:
            flags.append("negative λ̂")
        if entry.frac_below_init is not None and entry.frac_below_init > 0.05:
            flags.append("draws below L_n(w*)")
        if entry.r_hat is not None and entry.r_hat > 1.1:
            flags.append("chains disagree (R-hat > 1.1)")
    return flags


def calibrate(
    run: Run,
    base: SGLDConfig,
    checkpoint: str = "last",
    epsilons: tuple[float, ...] = DEFAULT_EPSILONS,
    nbeta_factors: tuple[float, ...] = DEFAULT_NBETA_FACTORS,
    gammas: tuple[float, ...] | None = None,
    progress: bool = False,
) -> dict:
    """:func:`calibrate_llc` at one checkpoint of a stored run, on its training set."""
    step = select_checkpoints(run, checkpoint)[-1]
    data = run.dataset()
    report = calibrate_llc(run.new_model(), (data.train_x, data.train_y), run.state_dict(step), base, epsilons, nbeta_factors,
                           gammas, checkpoint_id=step, progress=progress)
    return {"checkpoint": checkpoint, "step": step, **report}


def calibrate_llc(
    model: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor],
    params: Mapping[str, torch.Tensor] | None,
    base: SGLDConfig,
    epsilons: tuple[float, ...] = DEFAULT_EPSILONS,
    nbeta_factors: tuple[float, ...] = DEFAULT_NBETA_FACTORS,
    gammas: tuple[float, ...] | None = None,
    loss: str | LossFn = "cross_entropy",
    checkpoint_id: int = 0,
    progress: bool = False,
) -> dict:
    """Estimate λ̂ at ``params`` (default: the model's weights) over the ε × nβ (× γ) grid, every
    cell's chains in ONE batched run (each cell's chains are keyed as that cell alone would key
    them, so a cell's numbers equal its estimate alone); return the cells and a recommendation."""
    default_nbeta, convention = base.resolve_nbeta(int(data[1].shape[0]))
    grid = [dict(epsilon=e, gamma=g, nbeta=default_nbeta * f) for g in gammas or (base.gamma,) for f in nbeta_factors for e in epsilons]
    weights = dict(params) if params is not None else {n: p.detach() for n, p in model.named_parameters()}
    result = estimate_llc(
        model, data, [weights] * len(grid), loss=loss, config=base.model_copy(update=dict(temp_multiplier=1.0)),
        checkpoint_ids=[checkpoint_id] * len(grid), per_set=grid, progress=progress,
    )
    cells = [
        Cell(cell["epsilon"], cell["nbeta"], cell["gamma"], entry.llc_mean, entry.llc_std, entry.r_hat,
             entry.frac_below_init, entry.diverged_chains, health_flags(entry))
        for cell, entry in zip(grid, result.entries)
    ]
    return {
        "default_nbeta": default_nbeta,
        "nbeta_convention": convention,
        "sampler": base.sampler,
        "cells": [asdict(c) | {"healthy": c.healthy} for c in cells],
        "recommended": recommend(cells, default_nbeta, base.gamma),
    }


def recommend(cells: list[Cell], nbeta: float, gamma: float) -> dict | None:
    """Largest healthy ε in the flat region at (nβ, γ): the longest run of consecutive healthy
    ε whose λ̂ stay within FLAT_TOLERANCE of each other."""
    row = sorted((c for c in cells if np.isclose(c.nbeta, nbeta) and c.gamma == gamma), key=lambda c: c.epsilon)
    best: list[Cell] = []
    current: list[Cell] = []
    for cell in row:
        if cell.healthy and current and _flat(current + [cell]):
            current.append(cell)
        else:
            current = [cell] if cell.healthy else []
        if len(current) > len(best) or (len(current) == len(best) and current and current[-1].epsilon > best[-1].epsilon):
            best = list(current)
    if not best:
        return None
    chosen = best[-1]
    return {"epsilon": chosen.epsilon, "nbeta": chosen.nbeta, "gamma": chosen.gamma, "llc_mean": chosen.llc_mean,
            "flat_region_epsilons": [c.epsilon for c in best]}


def _flat(cells: list[Cell]) -> bool:
    values = [c.llc_mean for c in cells]
    return max(values) <= (1 + FLAT_TOLERANCE) * min(values)


def plot_calibration(report: dict):
    """Heatmap of λ̂ over (ε, nβ) for the first γ, with unhealthy cells hatched."""
    import matplotlib.pyplot as plt


    cells = [c for c in report["cells"] if c["gamma"] == report["cells"][0]["gamma"]]
    epsilons = sorted({c["epsilon"] for c in cells})
    nbetas = sorted({c["nbeta"] for c in cells})
    grid = np.full((len(nbetas), len(epsilons)), np.nan)
    fig, ax = plt.subplots(figsize=(7, 5))
    for c in cells:
        i, j = nbetas.index(c["nbeta"]), epsilons.index(c["epsilon"])
        if c["llc_mean"] is not None:
            grid[i, j] = c["llc_mean"]
        label = "—" if c["llc_mean"] is None else f"{c['llc_mean']:.3g}"
        ax.text(j, i, label + ("" if c["healthy"] else "\n✗"), ha="center", va="center", fontsize=8)
    image = ax.imshow(grid, origin="lower", cmap="viridis", aspect="auto")
    fig.colorbar(image, ax=ax, label="λ̂")
    ax.set_xticks(range(len(epsilons)), [f"{e:g}" for e in epsilons])
    ax.set_yticks(range(len(nbetas)), [f"{b:.4g}" for b in nbetas])
    ax.set_xlabel("ε (step size)")
    ax.set_ylabel("nβ")
    rec = report["recommended"]
    title = "no healthy setting found" if rec is None else f"recommended ε={rec['epsilon']:g}, nβ={rec['nbeta']:.4g}"
    ax.set_title(f"SGLD calibration ({title}; ✗ = unhealthy)")
    fig.tight_layout()
    return fig
