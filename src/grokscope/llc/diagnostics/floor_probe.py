"""Is an estimate at its quadratic floor a plateau? Chains preconditioned by the curvature tell.

An estimate that reads its quadratic floor Q (llc/diagnostics/quadratic.py) is right where the
Hessian's null directions add nothing to λ, and a plateau below λ where they do but the chains have
not explored them: plain SGLD's step ε is capped by the stiffest mode, so the flat directions move
by √ε a step. With the constant preconditioner

    M = ε (I + ε nβ H / η)⁻¹        (H: the Gauss-Newton matrix at w*)

a step w ← w − ½ M ∇U(w) + N(0, M), U = nβ L_B + γ/2 ‖w − w*‖², keeps the target (a constant
preconditioner leaves the Langevin diffusion's stationary law alone; Roberts & Stramer 2002), moves
the flat directions with step ε and caps a mode of curvature h at η in its own units. The probe runs
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
from ..sampling.tree import Tree
from .health import worst
from .quadratic import curvature, quadratic_floor

MALA_EVERY = 10  # a MALA measurement costs a second gradient
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
    names = list(anchor)
    shapes = [anchor[n].shape for n in names]
    sizes = [anchor[n].numel() for n in names]
    if epsilons is None:
        epsilons = [e * FLOOR_PROBE_NBETA / nbeta for e in FLOOR_PROBE_EPSILONS]
    per_chain = torch.tensor(epsilons, dtype=torch.float64).repeat_interleave(FLOOR_PROBE_CHAINS)[:, None]
    chains = per_chain.shape[0]
    stiffness = nbeta * torch.as_tensor(eigenvalues, dtype=torch.float64).clamp(min=0)
    device = x.device
    scale = (per_chain / (1 + per_chain * stiffness / FLOOR_PROBE_ETA)).float().to(device)  # [B, P]: M's eigenvalues per chain
    basis = torch.as_tensor(eigenvectors, dtype=torch.float32, device=device)
    centre = torch.cat([anchor[n].flatten().float() for n in names])[None]
    fixed_b = {n: t.float().expand(chains, *t.shape) for n, t in fixed.items()}

    def tree(flat: torch.Tensor) -> Tree:
        return {n: part.reshape(chains, *s) for n, part, s in zip(names, flat.split(sizes, dim=1), shapes)}

    def potential(w: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        loss, grads = objective.losses_and_grads(tree(w), fixed_b, xb, yb)
        flat_grad = torch.cat([grads[n].flatten(1) for n in names], dim=1)
        return loss, nbeta * loss + 0.5 * gamma * (w - centre).square().sum(1), nbeta * flat_grad + gamma * (w - centre)

    def precondition(v: torch.Tensor) -> torch.Tensor:
        return ((v @ basis) * scale) @ basis.T

    def half_energy(d: torch.Tensor) -> torch.Tensor:  # ½ dᵀ M⁻¹ d
        return 0.5 * ((d @ basis).square() / scale).sum(1)

    with torch.no_grad():
        init = float(objective.losses({n: t[None].float() for n, t in anchor.items()}, {n: t[None].float() for n, t in fixed.items()},
                                      x[None], y[None])[0])
    generator = torch.Generator().manual_seed(seed)
    w = centre.repeat(chains, 1)
    trace = torch.full((steps, chains), math.nan, device=device)
    accepted = []
    for step in range(steps):
        rows = torch.randint(0, x.shape[0], (chains, batch_size), generator=generator).to(device)
        xb, yb = x[rows], y[rows]
        loss, value, grad = potential(w, xb, yb)
        noise = (torch.randn(chains, basis.shape[0], generator=generator).to(device) * scale.sqrt()) @ basis.T
        proposal = w - 0.5 * precondition(grad) + noise
        if step % MALA_EVERY == 0:
            _, value_after, grad_after = potential(proposal, xb, yb)
            backward = w - proposal + 0.5 * precondition(grad_after)
            log_ratio = value - value_after - half_energy(backward) + half_energy(noise)
            accepted.append(torch.exp(log_ratio.clamp(max=0)).nan_to_num(0.0))
        trace[step] = loss  # a chain that diverges reads NaN from here on, and its run leaves the band
        w = proposal
    llc_per_chain = nbeta * (trace[steps // 2:].mean(0).double().cpu().numpy() - init)
    earlier = nbeta * (trace[steps // 4: steps // 2].mean(0).double().cpu().numpy() - init)
    mala = torch.stack(accepted).mean(0).cpu().numpy()
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

