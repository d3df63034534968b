"""What the estimator targets at a finite n, computed without sampling.

The LLC estimator averages nβ(L_n(w) − L_n(w*)) over the localised tempered posterior
p(w) ∝ exp(−nβ L_n(w) − γ/2 ‖w − w*‖²) (Lau et al. 2023, arXiv 2308.12108, eq. 8). Its limit as
n → ∞ is λ; at a finite n the expectation itself can lie far from λ, whatever the sampler does.
For models small enough to integrate, this module computes that expectation exactly, so a
validation can tell the sampler's error (against the expectation) from the estimand's (the
expectation against λ)."""

from __future__ import annotations

import torch


def crossing_estimand(
    powers: tuple[int, int], x: torch.Tensor, y: torch.Tensor, nbeta: float, gamma: float,
    half_width: float = 8.0, points: int = 4001,
) -> float:
    """E_p[nβ(L_n(w) − L_n(0))] for the normal crossing y = w₁^k₁ w₂^k₂ · x with the MSE loss and
    w* = 0, by a sum over a square grid (the density is smooth and, at γ ≥ 0.25, negligible beyond
    |w| = 8)."""
    x, y = x.double().flatten(), y.double().flatten()
    sxx, sxy = (x * x).mean(), (x * y).mean()
    ceiling = nbeta * sxy * sxy / sxx  # the largest −nβ(L_n(w) − L_n(0)): exp() cannot overflow
    grid = torch.linspace(-half_width, half_width, points, dtype=torch.float64)
    mass = moment = torch.zeros((), dtype=torch.float64)
    for row in grid.split(256):
        w1, w2 = torch.meshgrid(row, grid, indexing="ij")
        c = w1 ** powers[0] * w2 ** powers[1]
        excess = c * c * sxx - 2 * c * sxy  # L_n(w) − L_n(0)
        density = torch.exp(-nbeta * excess - 0.5 * gamma * (w1 * w1 + w2 * w2) - ceiling)
        mass = mass + density.sum()
        moment = moment + (density * excess).sum()
    return float(nbeta * moment / mass)


def regular_estimand(x: torch.Tensor, nbeta: float, gamma: float) -> float:
    """The same expectation for least squares at its solution w* = ŵ, in closed form: the posterior
    is Gaussian with precision 2nβΣ + γI (Σ = XᵀX/n), so E[nβ(w − ŵ)ᵀΣ(w − ŵ)] = nβ tr(Σ(2nβΣ + γI)⁻¹)."""
    x = x.double()
    sigma = x.T @ x / x.shape[0]
    precision = 2 * nbeta * sigma + gamma * torch.eye(x.shape[1], dtype=torch.float64)
    return float(nbeta * torch.trace(torch.linalg.solve(precision, sigma)))
