"""Per-sample posterior statistics from the per-sample losses ℓ_i(w) at the kept draws of the local
posterior p(w) ∝ exp(−nβ L_n(w) − (γ/2)‖w − w*‖²) (REFERENCE §11). Draws are pooled over chains
after the burn-in; every function takes them as [draws, samples] and returns float64.

Sign and scale conventions (checked against leave-one-out retraining in tests/test_posterior.py):

- loss gain of sample i: E[ℓ_i(w)] − ℓ_i(w*) (Timaeus' "lightweight Bayesian toolkit", 2025);
- loss kernel K_ij = Cov(ℓ_i, ℓ_j), and its correlation form (devinterp 2.x's ``bif`` returns this
  correlation, with chains stacked as here, and calls it the influence);
- Bayesian influence of training sample i on an observable φ (Kreer et al. 2025):
  BIF(i → φ) = −β Cov(ℓ_i, φ) with β = nβ / n, the derivative of E[φ] with respect to the weight
  of sample i in the tempered likelihood, so BIF ≈ E[φ | with i] − E[φ | without i]: negative when
  including i lowers φ;
- susceptibility (Baker et al. 2025, arXiv 2504.18274) of φ to a shift of the data toward a subset
  q: χ = −Cov(φ, nβ [L_q − L_n]) = d E_h[φ] / dh under p_h ∝ p · exp(−h nβ (L_q − L_n)).
  devinterp 2.x's ``susceptibilities`` takes φ = L_n − L_n(w*) under a component-restricted
  posterior and leaves out the factor nβ and the sign: its number is ours divided by −nβ
  (up to its use of the unrestricted posterior's means for the centring).
"""

from __future__ import annotations

import torch


def pooled(per_sample: torch.Tensor, steps: torch.Tensor, burn_in: int, alive: torch.Tensor) -> torch.Tensor:
    """Per-sample losses recorded at ``steps`` [S] for chains [S, C, n] → the kept draws [D, n]:
    steps at or after ``burn_in``, chains where ``alive`` (not diverged), pooled."""
    kept = per_sample[steps >= burn_in][:, alive]
    return kept.reshape(-1, kept.shape[-1]).double()


def loss_gain(draws: torch.Tensor, at_anchor: torch.Tensor) -> torch.Tensor:
    """E[ℓ_i(w)] − ℓ_i(w*) per sample."""
    return draws.mean(0) - at_anchor.double()


def covariance(a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """Cov(a_i, b_j) over draws (unbiased) for a [D, n], b [D, m] (default a: the loss kernel)."""
    a = a - a.mean(0)
    b = a if b is None else b - b.mean(0)
    return a.T @ b / (a.shape[0] - 1)


def correlation(kernel: torch.Tensor) -> torch.Tensor:
    """The correlation form K_ij / √(K_ii K_jj) of a kernel (0 where a sample's loss never varied)."""
    scale = kernel.diagonal().clamp_min(0).sqrt()
    scale = torch.where(scale > 0, 1 / scale, torch.zeros_like(scale))
    return kernel * scale[:, None] * scale[None, :]


def influence(train_draws: torch.Tensor, observables: torch.Tensor, beta: float) -> torch.Tensor:
    """BIF(i → φ_j) = −β Cov(ℓ_i, φ_j) [n_train, m] (module docstring)."""
    return -beta * covariance(train_draws, observables)


def susceptibility(phi: torch.Tensor, subset_losses: torch.Tensor, train_loss: torch.Tensor, nbeta: float) -> torch.Tensor:
    """χ_q = −Cov(φ, nβ [L_q − L_n]) for each subset q: φ [D], subset_losses [D, Q], train_loss [D] → [Q]."""
    return -nbeta * covariance(phi[:, None], subset_losses - train_loss[:, None])[0]


def chain_mcse(per_chain: list[torch.Tensor]) -> torch.Tensor:
    """Monte-Carlo error of a statistic from its value on each chain alone: sd across chains / √C
    (the chains as independent batches; Flegal & Jones 2010). NaN with fewer than two chains."""
    if len(per_chain) < 2:
        return torch.full_like(per_chain[0], float("nan"))
    values = torch.stack(per_chain)
    return values.std(0) / len(per_chain) ** 0.5


def class_means(per_sample: torch.Tensor, labels: torch.Tensor, classes: int) -> torch.Tensor:
    """The mean over the samples of each class: per_sample [..., n], labels [n] in [0, classes) → [..., classes]."""
    onehot = torch.nn.functional.one_hot(labels, classes).to(per_sample.dtype)
    return per_sample @ onehot / onehot.sum(0).clamp_min(1)


def block_means(matrix: torch.Tensor, labels: torch.Tensor, classes: int) -> torch.Tensor:
    """M[s, t]: the mean of matrix[i, j] over i of class s and j of class t, i ≠ j [classes, classes]."""
    onehot = torch.nn.functional.one_hot(labels, classes).to(matrix.dtype)
    off = matrix - torch.diag_embed(matrix.diagonal())
    sizes = onehot.sum(0)
    pairs = sizes[:, None] * sizes[None, :] - torch.diag(sizes)  # (i, j) pairs of each block, i ≠ j
    return (onehot.T @ off @ onehot) / pairs.clamp_min(1)


def block_fit(matrix: torch.Tensor, labels: torch.Tensor, classes: int) -> tuple[torch.Tensor, float]:
    """The block means of ``matrix`` over the samples' classes, and the share of the variance of its
    off-diagonal entries they explain (R²): 1 means the matrix is constant on class blocks."""
    means = block_means(matrix, labels, classes)
    fitted = means[labels][:, labels]
    off = ~torch.eye(matrix.shape[0], dtype=torch.bool)
    values, fitted = matrix[off], fitted[off]
    total = ((values - values.mean()) ** 2).sum()
    return means, float(1 - ((values - fitted) ** 2).sum() / total) if total > 0 else float("nan")
