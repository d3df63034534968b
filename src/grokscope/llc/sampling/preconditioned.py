"""Langevin chains preconditioned by the curvature at w*, for models small enough for its eigenvectors.

Plain SGLD's step ε is capped by the stiffest mode of the posterior, so its flat directions move by
√ε a step and may take longer to explore than any budget. With the constant preconditioner

    M = ε (I + ε nβ H / η)⁻¹        (H = V diag(h) Vᵀ: the Gauss-Newton matrix at w*)

a step w ← w − ½ M ∇U(w) + N(0, M), U = nβ L_B + γ/2 ‖w − w*‖², keeps the target (a constant
preconditioner leaves the Langevin diffusion's stationary law alone; Roberts & Stramer 2002), moves
the flat directions with step ε and caps a mode of curvature h at η in its own units. Every
MALA_EVERY-th step also scores its move with the minibatch potential at both ends (the acceptance
of the Metropolis-adjusted proposal, not applied). A block is recorded as the estimator's observers
record one, so the estimator's summary and health rule read it.

Each chain has its own ε and a noise slot: chains of one slot share minibatches and noise, so
chain c of every ε in a grid is paired with the others (as plain SGLD's grids are). Running
``run(a)`` then ``run(b)`` gives the same chains as ``run(a + b)``.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from .objective import BatchedObjective
from .tree import Tree

MALA_EVERY = 10  # a MALA measurement costs a second gradient
DISTANCE_EVERY = 10  # as the estimator records ‖w − w*‖² (how λ̂ responds to γ: llc/diagnostics/localisation.py)


class PreconditionedChains:
    """Chains from w* = ``anchor`` (name -> tensor, the sampled parameters; ``fixed`` the others) on
    minibatches of ``batch_size`` from (x, y); H from ``eigenvalues`` and ``eigenvectors`` (columns,
    in the flattened order of ``anchor``); one chain per entry of ``epsilons``, drawing the
    minibatches and noise of slot ``slots[i]`` (default: every chain its own)."""

    def __init__(self, objective: BatchedObjective, anchor: Tree, fixed: Tree, x: torch.Tensor, y: torch.Tensor,
                 eigenvalues: np.ndarray, eigenvectors: np.ndarray, nbeta: float, gamma: float, eta: float,
                 epsilons: Sequence[float], batch_size: int, seed: int, slots: Sequence[int] | None = None):
        self.objective, self.x, self.y, self.nbeta, self.gamma, self.batch_size = objective, x, y, nbeta, gamma, batch_size
        self.names = list(anchor)
        self.shapes = [anchor[n].shape for n in self.names]
        self.sizes = [anchor[n].numel() for n in self.names]
        self.slots = torch.as_tensor(list(range(len(epsilons))) if slots is None else list(slots))
        self.n_slots = int(self.slots.max()) + 1  # draws for every slot, so a chain's stream never depends on the others
        device = x.device
        per_chain = torch.tensor(list(epsilons), dtype=torch.float64)[:, None]
        stiffness = nbeta * torch.as_tensor(eigenvalues, dtype=torch.float64).clamp(min=0)
        self.scale = (per_chain / (1 + per_chain * stiffness / eta)).float().to(device)  # [B, P]: M's eigenvalues per chain
        self.basis = torch.as_tensor(eigenvectors, dtype=torch.float32, device=device)
        self.centre = torch.cat([anchor[n].flatten().float() for n in self.names])[None]
        self.fixed = {n: t.float() for n, t in fixed.items()}
        self.w = self.centre.repeat(len(epsilons), 1)
        self.generator = torch.Generator().manual_seed(seed)
        self.steps_done = 0
        with torch.no_grad():
            self.init_loss = float(objective.losses({n: t[None].float() for n, t in anchor.items()},
                                                    {n: t[None] for n, t in self.fixed.items()}, x[None], y[None])[0])

    def take(self, rows: Sequence[int]) -> None:
        """Keep chains ``rows`` alone (their streams go on as before)."""
        index = list(rows)
        self.w, self.scale, self.slots = self.w[index], self.scale[index], self.slots[index]

    def _tree(self, flat: torch.Tensor) -> Tree:
        return {n: part.reshape(flat.shape[0], *s) for n, part, s in zip(self.names, flat.split(self.sizes, dim=1), self.shapes)}

    def _potential(self, w: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fixed = {n: t.expand(w.shape[0], *t.shape) for n, t in self.fixed.items()}
        loss, grads = self.objective.losses_and_grads(self._tree(w), fixed, xb, yb)
        flat_grad = torch.cat([grads[n].flatten(1) for n in self.names], dim=1)
        pull = w - self.centre
        return loss, self.nbeta * loss + 0.5 * self.gamma * pull.square().sum(1), self.nbeta * flat_grad + self.gamma * pull

    def _precondition(self, v: torch.Tensor) -> torch.Tensor:
        return ((v @ self.basis) * self.scale) @ self.basis.T

    def _half_energy(self, d: torch.Tensor) -> torch.Tensor:  # ½ dᵀ M⁻¹ d
        return 0.5 * ((d @ self.basis).square() / self.scale).sum(1)

    def run(self, steps: int) -> dict[str, torch.Tensor]:
        """``steps`` more steps, recorded as the estimator's observers record a block
        (llc/sampling/observers.py): each chain's minibatch loss before each step ``losses``
        [steps, B] (NaN from a divergence on), ``mala_total`` and ``mala_count`` [B], and ‖w − w*‖²
        every DISTANCE_EVERY-th step (counted from step 0) ``anchor_distance`` [S, B] with
        ``anchor_distance_steps``."""
        slots, chains, device = self.n_slots, self.w.shape[0], self.x.device
        trace = torch.full((steps, chains), math.nan, device=device)
        accepted = torch.zeros(chains, device=device)
        measured = 0
        distance_steps = list(range(-(-self.steps_done // DISTANCE_EVERY) * DISTANCE_EVERY, self.steps_done + steps, DISTANCE_EVERY))
        distances = torch.empty(len(distance_steps), chains, device=device)
        for offset in range(steps):
            step = self.steps_done + offset
            rows = torch.randint(0, self.x.shape[0], (slots, self.batch_size), generator=self.generator).to(device)[self.slots]
            xb, yb = self.x[rows], self.y[rows]
            loss, value, grad = self._potential(self.w, xb, yb)
            xi = torch.randn(slots, self.basis.shape[0], generator=self.generator).to(device)[self.slots]
            noise = (xi * self.scale.sqrt()) @ self.basis.T
            proposal = self.w - 0.5 * self._precondition(grad) + noise
            if step % MALA_EVERY == 0:
                _, value_after, grad_after = self._potential(proposal, xb, yb)
                backward = self.w - proposal + 0.5 * self._precondition(grad_after)
                log_ratio = value - value_after - self._half_energy(backward) + self._half_energy(noise)
                accepted += torch.exp(log_ratio.clamp(max=0)).nan_to_num(0.0)
                measured += 1
            if step % DISTANCE_EVERY == 0:
                distances[(step - distance_steps[0]) // DISTANCE_EVERY] = (self.w - self.centre).square().sum(1)
            trace[offset] = loss
            self.w = proposal
        self.steps_done += steps
        return {"losses": trace.cpu(), "mala_total": accepted.cpu(), "mala_count": torch.full((chains,), float(measured)),
                "anchor_distance_steps": torch.tensor(distance_steps, dtype=torch.long), "anchor_distance": distances.cpu()}
