"""Choosing the SGLD step size from the data, without the true λ: a batched grid of cells with every
cell's λ̂ and health flags, and one documented rule that picks a cell (docs/validation.md).

The rule:
1. Bracket (when no ε grid is given): short chains (500 steps, at most 4 chains) at ε = 1e-9, 1e-8,
   ..., 1e-1 in one batched run; ε₀ is the last ε, counting up, before the first whose chains
   diverge or whose MALA acceptance falls below MALA_MIN_ACCEPTANCE.
2. Grid: ε₀·2^j for j = −3..3 with the estimate's own chains and steps, in one batched run. Every
   cell gets the health flags of llc/health.py, and "not flat" when its λ̂ differs from the λ̂ at the
   next smaller ε by more than FLAT_TOLERANCE and by more than two standard errors of the paired
   per-chain differences (the smallest ε has no neighbour to check: "flatness not checked").
3. Choose the largest ε of the first run of consecutive healthy cells, counting up from the
   smallest ε, whose λ̂ also stays flat against the run's first cell (no slow creep): past the
   first jump in λ̂ no ε is trusted, even where λ̂ levels off again. When no
   cell is healthy, choose among the cells with MALA acceptance ≥ MALA_MIN_ACCEPTANCE the one with
   the fewest flags (on a tie, one whose flags say too few steps rather than a step-size bias, then
   the larger ε; the smallest ε when no cell qualifies), marked unhealthy with its reasons: never a
   silent number.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..run import Run
from ..thresholds import FLAT_TOLERANCE, MALA_MIN_ACCEPTANCE
from .config import SGLDConfig
from .estimate import estimate_llc
from .objective import LossFn
from .result import CheckpointLLC
from .stored import select_checkpoints

BRACKET_EPSILONS = tuple(10.0**k for k in range(-9, 0))
BRACKET_STEPS, BRACKET_CHAINS = 500, 4  # the bracketing chains (MALA measured on every 5th move after burn-in)
GRID_OFFSETS = tuple(2.0**j for j in range(-3, 4))  # short chains misjudge ε₀ both ways (sgld over, RMSprop under)
BIAS_FLAGS = ("not flat", "MALA")  # flags that say λ̂ depends on the step size (as opposed to too few steps)


@dataclass
class Cell:
    epsilon: float
    nbeta: float
    gamma: float
    llc_mean: float | None
    llc_std: float | None
    llc_per_chain: list[float | None]
    r_hat: float | None
    ess_bulk: float | None
    ess_tail: float | None
    mala_acceptance: float | None
    drift: float | None
    frac_below_init: float | None
    diverged_chains: int
    flags: list[str]

    @classmethod
    def of(cls, setting: Mapping[str, float], entry: CheckpointLLC) -> "Cell":
        fields = {name: getattr(entry, name) for name in cls.__dataclass_fields__ if name not in setting}
        return cls(**setting, **fields | {"flags": list(entry.flags)})

    @property
    def healthy(self) -> bool:
        return self.llc_mean is not None and not self.flags

    @property
    def mala_in_band(self) -> bool:
        return not self.diverged_chains and self.mala_acceptance is not None and self.mala_acceptance >= MALA_MIN_ACCEPTANCE


def calibrate(run: Run, base: SGLDConfig, checkpoint: str = "last", epsilons: Sequence[float] | None = None,
              nbeta_factors: Sequence[float] = (1.0,), gammas: Sequence[float] | None = None, progress: bool = False) -> dict:
    """:func:`calibrate_llc` at one checkpoint of a stored run, on its training set."""
    step = select_checkpoints(run, checkpoint)[-1]
    data = run.dataset()
    report = calibrate_llc(run.new_model(), (data.train_x, data.train_y), run.state_dict(step), base, epsilons,
                           nbeta_factors, gammas, checkpoint_id=step, progress=progress)
    return {"checkpoint": checkpoint, "step": step, **report}


def calibrate_llc(
    model: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor],
    params: Mapping[str, torch.Tensor] | None,
    base: SGLDConfig,
    epsilons: Sequence[float] | None = None,
    nbeta_factors: Sequence[float] = (1.0,),
    gammas: Sequence[float] | None = None,
    loss: str | LossFn = "cross_entropy",
    checkpoint_id: int = 0,
    masks: Mapping[str, torch.Tensor] | None = None,
    progress: bool = False,
) -> dict:
    """Estimate λ̂ at ``params`` (default: the model's weights) over an ε (× nβ factor × γ) grid,
    every cell's chains in ONE batched run (a cell's numbers equal its estimate alone), and choose a
    cell by the module's rule. Without ``epsilons`` the grid is placed by a MALA bracket first.
    ``masks`` (as :func:`estimate_llc` takes them) restrict what is sampled."""
    weights = dict(params) if params is not None else {n: p.detach() for n, p in model.named_parameters()}
    base = base.model_copy(update=dict(mala=True))
    default_nbeta, convention = base.resolve_nbeta(int(data[1].shape[0]))
    bracket = None
    if epsilons is None:
        bracket = _bracket(model, data, weights, base, loss, checkpoint_id, masks, progress)
        epsilons = [bracket["epsilon"] * offset for offset in GRID_OFFSETS]
    if not epsilons or any(not (e > 0) for e in epsilons):
        raise ConfigError(f"epsilons={list(epsilons)}: give positive step sizes")
    grid = [dict(epsilon=float(e), gamma=float(g), nbeta=default_nbeta * f)
            for g in gammas or (base.gamma,) for f in nbeta_factors for e in sorted(epsilons)]
    result = estimate_llc(model, data, [weights] * len(grid), loss=loss, config=base,
                          checkpoint_ids=[checkpoint_id] * len(grid), per_set=grid, masks=masks, progress=progress)
    cells = [Cell.of(setting, entry) for setting, entry in zip(grid, result.entries)]
    _flag_not_flat(cells)
    return {
        "default_nbeta": default_nbeta,
        "nbeta_convention": convention,
        "sampler": base.sampler,
        "n_steps": base.n_steps,
        "chains": base.chains,
        "bracket": bracket,
        "cells": [asdict(c) | {"healthy": c.healthy} for c in cells],
        "recommended": recommend(cells, default_nbeta, base.gamma),
        "rule": __doc__.split("The rule:\n", 1)[1].strip(),
    }


def _bracket(model, data, weights, base: SGLDConfig, loss, checkpoint_id: int, masks, progress: bool) -> dict:
    """Short chains over BRACKET_EPSILONS; ε₀ = the last ε, counting up, before the first whose chains
    diverge or whose MALA acceptance falls below MALA_MIN_ACCEPTANCE."""
    steps = min(base.n_steps, BRACKET_STEPS)
    short = base.model_copy(update=dict(n_steps=steps, burn_in=steps // 4, chains=min(base.chains, BRACKET_CHAINS), mala=True,
                                        mala_every=5, save_samples=0, step_metrics=False))
    grid = [dict(epsilon=e) for e in BRACKET_EPSILONS]
    result = estimate_llc(model, data, [weights] * len(grid), loss=loss, config=short,
                          checkpoint_ids=[checkpoint_id] * len(grid), per_set=grid, masks=masks, progress=progress)
    acceptance = [None if e.diverged_chains or e.llc_mean is None else e.mala_acceptance for e in result.entries]
    epsilon = BRACKET_EPSILONS[0]
    for eps, a in zip(BRACKET_EPSILONS, acceptance):
        if a is None or a < MALA_MIN_ACCEPTANCE:
            break
        epsilon = eps
    return {"epsilon": epsilon, "n_steps": steps,
            "epsilons": list(BRACKET_EPSILONS), "mala_acceptance": acceptance}


def _flag_not_flat(cells: list[Cell]) -> None:
    """Flag each cell whose λ̂ is not flat (:func:`_jump`) against the λ̂ at the next smaller ε (same nβ, γ)."""
    rows: dict[tuple[float, float], list[Cell]] = {}
    for cell in cells:
        rows.setdefault((cell.nbeta, cell.gamma), []).append(cell)
    for row in rows.values():
        row.sort(key=lambda c: c.epsilon)
        row[0].flags.append("flatness not checked: the smallest ε of the grid")
        for smaller, cell in zip(row, row[1:]):
            change = _jump(smaller, cell)
            if change is not None:
                cell.flags.append(f"not flat: λ̂ {change:+.0%} against ε = {smaller.epsilon:.3g} "
                                  f"(> {FLAT_TOLERANCE:.0%} and 2 standard errors)")


def _jump(reference: Cell, cell: Cell) -> float | None:
    """The relative change of λ̂ from ``reference`` to ``cell`` when it exceeds FLAT_TOLERANCE and two
    standard errors of the paired per-chain differences (chain c of every cell shares its
    minibatches and noise), else None."""
    if cell.llc_mean is None or reference.llc_mean is None:
        return None
    pairs = np.array([(a, b) for a, b in zip(cell.llc_per_chain, reference.llc_per_chain) if a is not None and b is not None])
    differences = pairs[:, 0] - pairs[:, 1]
    se = differences.std(ddof=1) / np.sqrt(len(differences)) if len(differences) > 1 else 0.0
    change = cell.llc_mean - reference.llc_mean
    if abs(change) > FLAT_TOLERANCE * abs(reference.llc_mean) and abs(differences.mean()) > 2 * se:
        return change / abs(reference.llc_mean) if reference.llc_mean else float("inf")
    return None


def recommend(cells: list[Cell], nbeta: float, gamma: float) -> dict:
    """The rule's choice at (nβ, γ): the largest ε of the first run of healthy cells, else the least
    bad cell, with its reasons."""
    at_base = [c for c in cells if np.isclose(c.nbeta, nbeta) and c.gamma == gamma]
    row = sorted(at_base or cells, key=lambda c: c.epsilon)  # every cell when the grid leaves out the base nβ, γ
    run: list[Cell] = []
    for cell in row:
        if cell.healthy and not (run and _jump(run[0], cell) is not None):
            run.append(cell)
        elif run:
            break
    in_band = [c for c in row if c.mala_in_band and c.llc_mean is not None]
    if run:
        chosen, why = run[-1], "the largest step size of the first run of healthy cells"
    elif in_band:
        chosen = min(in_band, key=lambda c: (len(c.flags), any(f.startswith(BIAS_FLAGS) for f in c.flags), -c.epsilon))
        why = "no healthy cell: the cell with MALA acceptance in band and the fewest flags"
    else:
        chosen, why = row[0], "no healthy cell and none with MALA acceptance in band: the smallest step size"
    return {"epsilon": chosen.epsilon, "nbeta": chosen.nbeta, "gamma": chosen.gamma, "llc_mean": chosen.llc_mean,
            "llc_std": chosen.llc_std, "mala_acceptance": chosen.mala_acceptance, "healthy": chosen.healthy,
            "flags": list(chosen.flags), "why": why}
