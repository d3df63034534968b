"""Is an estimate at its quadratic floor a plateau? Chains preconditioned by the curvature tell.

An estimate that reads its quadratic floor Q (llc/diagnostics/quadratic.py) is right where the
Hessian's null directions add nothing to λ, and a plateau below λ where they do but the chains have
not explored them. Chains preconditioned by the curvature at w* (llc/sampling/preconditioned.py) move
the flat directions with a step that plain SGLD's stiffest mode would not allow. The probe runs
such chains at a few ε from w*, takes the largest ε whose minibatch MALA acceptance is at least
FLOOR_PROBE_MALA, and reads λ̂ over the second half of its steps: **plateau** when that exceeds Q by
more than SETTLE_TOLERANCE and two standard errors, **below the floor** when it lies that far below,
else **at the floor**. Developed on seven deep linear networks and judged, fixed in advance, on 13
estimates at their floor: 12 verdicts right (docs/validation.md, "The quadratic floor").
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ...thresholds import (
    FLOOR_PROBE_CHAINS,
    FLOOR_PROBE_EPSILONS,
    FLOOR_PROBE_ETA,
    FLOOR_PROBE_MALA,
    FLOOR_PROBE_NBETA,
    FLOOR_PROBE_STEPS,
    SETTLE_TOLERANCE,
)
from ..sampling.objective import BatchedObjective
from ..sampling.preconditioned import PreconditionedChains
from ..sampling.tree import Tree
from .health import worst
from .quadratic import curvature, quadratic_floor

PLATEAU = "plateau at the quadratic floor"  # how the reason of a plateau verdict begins


def at_floor(llc: float | None, floor: float | None, n_params: int) -> bool:
    """λ̂ within SETTLE_TOLERANCE of a floor below n_params/2 (a Hessian with null directions, where
    λ may exceed Q)."""
    return (llc is not None and bool(floor) and abs(llc - floor) <= SETTLE_TOLERANCE * floor
            and floor < (1 - SETTLE_TOLERANCE) * n_params / 2)


def probe_floor(objective: BatchedObjective, anchor: Tree, fixed: Tree, x: torch.Tensor, y: torch.Tensor,
                eigenvalues: np.ndarray, eigenvectors: np.ndarray, floor: float, nbeta: float, gamma: float,
                batch_size: int, seed: int, epsilons: Sequence[float] | None = None) -> dict:
    """The verdict on an estimate at its ``floor``: preconditioned chains (FLOOR_PROBE_CHAINS at each
    ε of ``epsilons``, default FLOOR_PROBE_EPSILONS scaled to this nβ) from w* = ``anchor`` (name ->
    tensor, the sampled parameters; ``fixed`` the others), minibatches of ``batch_size`` from (x, y);
    H = V diag(h) Vᵀ from ``eigenvalues`` h and ``eigenvectors`` V (columns, in the flattened order
    of ``anchor``). Each run records λ̂ over the second half of the steps and over [T/4, T/2]."""
    steps = FLOOR_PROBE_STEPS
    if epsilons is None:
        epsilons = [e * FLOOR_PROBE_NBETA / nbeta for e in FLOOR_PROBE_EPSILONS]
    chains = PreconditionedChains(objective, anchor, fixed, x, y, eigenvalues, eigenvectors, nbeta, gamma, FLOOR_PROBE_ETA,
                                  [e for e in epsilons for _ in range(FLOOR_PROBE_CHAINS)], batch_size, seed)
    record = chains.run(steps)
    trace = record["losses"].double().numpy()
    llc_per_chain = nbeta * (trace[steps // 2:].mean(0) - chains.init_loss)
    earlier = nbeta * (trace[steps // 4: steps // 2].mean(0) - chains.init_loss)
    mala = (record["mala_total"] / record["mala_count"]).numpy()
    runs = []
    for i, epsilon in enumerate(epsilons):
        own = slice(i * FLOOR_PROBE_CHAINS, (i + 1) * FLOOR_PROBE_CHAINS)
        values = llc_per_chain[own]
        runs.append(dict(epsilon=epsilon, llc=float(values.mean()), llc_se=float(values.std(ddof=1) / math.sqrt(len(values))),
                         llc_earlier=float(earlier[own].mean()), mala_acceptance=float(mala[own].mean()),
                         llc_per_chain=values.tolist()))
    return dict(floor=floor, steps=steps, runs=runs, **verdict(runs, floor))


def verdict(runs: list[dict], floor: float) -> dict:
    """The run at the largest ε with MALA ≥ FLOOR_PROBE_MALA (finite λ̂) and what it says of the floor."""
    band = [r for r in runs if r["mala_acceptance"] >= FLOOR_PROBE_MALA and math.isfinite(r["llc"])]
    if not band:
        return dict(verdict="no step size in the band", epsilon=None, llc=None, llc_se=None)
    chosen = max(band, key=lambda r: r["epsilon"])
    gap, margin = chosen["llc"] - floor, max(SETTLE_TOLERANCE * floor, 2 * chosen["llc_se"])
    found = "plateau" if gap > margin else "below the floor" if -gap > margin else "at the floor"
    return dict(verdict=found, epsilon=chosen["epsilon"], llc=chosen["llc"], llc_se=chosen["llc_se"])


def probe_seed(seed: int, checkpoint_id: int) -> int:
    """The probe's random stream for an estimate's seed and checkpoint id (never that of its chains)."""
    return (seed * 2**32 + checkpoint_id + 2**31) % 2**63


def judge(status: str, flags: list[str], probe: dict) -> str:
    """The status of an estimate after its probe; a plateau's reason joins ``flags``."""
    if probe["verdict"] != "plateau":
        return status
    flags.append(f"{PLATEAU}: λ̂ reads the floor {probe['floor']:.3g}, and chains preconditioned by the curvature at w* read "
                 f"{probe['llc']:.3g} ± {probe['llc_se']:.2g} (ε {probe['epsilon']:.2g}): λ lies above λ̂, by how much is unknown")
    return worst(status, "unreliable")


def probe_model(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], params: Mapping[str, torch.Tensor], loss: str,
                nbeta: float, gamma: float, batch_size: int, seed: int, epsilons: Sequence[float] | None = None) -> dict | None:
    """:func:`probe_floor` at ``params`` (every parameter sampled), its floor computed here; None for a
    loss without a curvature."""
    names = [n for n, _ in model.named_parameters()]
    params = {n: params[n].detach() for n in names}
    spectrum = curvature(model, params, names, *data, loss)
    if spectrum is None:
        return None
    return probe_floor(BatchedObjective(model, loss), params, {}, data[0], data[1], *spectrum,
                       quadratic_floor(spectrum[0], nbeta, gamma), nbeta, gamma, batch_size, seed, epsilons)

