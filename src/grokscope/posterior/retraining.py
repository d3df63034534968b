"""The check of the Bayesian influence where the answer can be computed: leave one training sample
out and retrain from the same checkpoint.

Retraining minimises the local posterior's own potential, F_S(w) = β Σ_{i∈S} ℓ_i(w) + (γ/2)‖w − w*‖²
(β = nβ / n), in float64 by L-BFGS, once with every training sample and once without each. Including
sample i moves an observable φ by φ(w_all) − φ(w_−i); to first order (a Gaussian posterior around the
minimiser) that is −β ∇φᵀ (∇²F)⁻¹ ∇ℓ_i = −β Cov(ℓ_i, φ), the BIF of posterior/statistics.py.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import functional_call

from ..llc.sampling.objective import resolve_loss


def retrained(model: nn.Module, anchor: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor,
              beta: float, gamma: float, iterations: int = 500) -> dict[str, torch.Tensor]:
    """argmin_w β Σ_i weights_i ℓ_i(w) + (γ/2)‖w − w*‖², from w* (float64)."""
    net = copy.deepcopy(model).double()
    start = {name: t.detach().double() for name, t in anchor.items()}
    params = {name: t.clone().requires_grad_(True) for name, t in start.items()}
    per_sample = resolve_loss("cross_entropy").per_sample
    optimiser = torch.optim.LBFGS(list(params.values()), lr=1, max_iter=iterations, tolerance_grad=1e-12,
                                  tolerance_change=1e-15, history_size=50, line_search_fn="strong_wolfe")

    def potential():
        optimiser.zero_grad()
        losses = per_sample(functional_call(net, params, (x,)), y)
        value = beta * (weights * losses).sum() + gamma / 2 * sum(((params[n] - start[n]) ** 2).sum() for n in params)
        value.backward()
        return value

    optimiser.step(potential)
    return {name: t.detach() for name, t in params.items()}


@torch.no_grad()
def mean_loss(model: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> float:
    per_sample = resolve_loss("cross_entropy").per_sample
    return float(per_sample(functional_call(copy.deepcopy(model).double(), params, (x,)), y).mean())


def leave_one_out_effects(model: nn.Module, anchor: dict[str, torch.Tensor], train: tuple[torch.Tensor, torch.Tensor],
                          observable: tuple[torch.Tensor, torch.Tensor], nbeta: float, gamma: float) -> torch.Tensor:
    """φ(w_all) − φ(w_−i) for each training sample i, φ the mean loss on ``observable`` [n_train]."""
    x, y = train
    n = int(y.shape[0])
    beta = nbeta / n
    every = retrained(model, anchor, x, y, torch.ones(n, dtype=torch.float64), beta, gamma)
    with_all = mean_loss(model, every, *observable)
    effects = []
    for i in range(n):
        weights = torch.ones(n, dtype=torch.float64)
        weights[i] = 0
        effects.append(with_all - mean_loss(model, retrained(model, anchor, x, y, weights, beta, gamma), *observable))
    return torch.tensor(effects, dtype=torch.float64)
