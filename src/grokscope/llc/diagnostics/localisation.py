"""How λ̂ responds to the localisation strength γ, read from the draws (no second run).

Under p_γ(w) ∝ exp(−nβ L_n(w) − γ/2 ‖w − w*‖²), d E[L_n] / dγ = −½ Cov(L_n, ‖w − w*‖²), so the
elasticity of λ̂ = nβ (E[L_n] − L_n(w*)) in γ is

    d ln λ̂ / d ln γ = −(γ/2) Cov(L_n, ‖w − w*‖²) / (E[L_n] − L_n(w*)).

λ is the n → ∞ limit and does not depend on γ. Where the posterior spreads as far as the
localisation lets it (a flat singular valley, as in the normal crossings with both powers ≥ 2 at
n = 1000), the elasticity is markedly negative and λ̂ reads below λ (docs/validation.md, "Where
the normal-crossing bias comes from"). The minibatch loss of a step is an unbiased estimate of
L_n at that step's weights, and its minibatch is drawn independently of them, so the covariance
with the minibatch losses estimates the one with L_n; only its noise grows.
"""

from __future__ import annotations

import numpy as np


# Student's t at 97.5% for 1..9 degrees of freedom; from 10 on, 1.96 + 2.4/df is within 0.01
T_975 = (12.71, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26)


def t_975(df: int) -> float:
    return T_975[df - 1] if df < 10 else 1.96 + 2.4 / df


def gamma_elasticity(losses: np.ndarray, distance: np.ndarray, distance_steps: np.ndarray, burn_in: int,
                     init_loss: float, gamma: float) -> tuple[float, float, float] | None:
    """d ln λ̂ / d ln γ, its standard error from the spread of the chains' own values, and the
    two-sided 95% multiple of that error (Student's t, chains − 1 degrees of freedom), from the
    losses [chains, steps] and ‖w − w*‖² [recorded steps, chains] at the kept steps; None when there
    is nothing to estimate (γ = 0, fewer than three chains or ten kept records, λ̂ ≤ 0)."""
    kept = (distance_steps >= burn_in) & (distance_steps < losses.shape[1])
    if gamma <= 0 or losses.shape[0] < 3 or kept.sum() < 10:
        return None
    loss = losses[:, distance_steps[kept]]  # [chains, S]
    sq = distance[kept].T.astype(np.float64)  # [chains, S]
    excess = loss.mean() - init_loss
    if not excess > 0:
        return None
    covariance = ((loss - loss.mean(1, keepdims=True)) * (sq - sq.mean(1, keepdims=True))).mean(1)
    per_chain = -0.5 * gamma * covariance / excess
    return float(per_chain.mean()), float(per_chain.std(ddof=1) / np.sqrt(len(per_chain))), t_975(len(per_chain) - 1)
