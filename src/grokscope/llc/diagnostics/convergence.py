"""Chain health over post-burn-in loss traces [chains, draws]: rank-normalised split R-hat (bulk and
folded tail) and bulk/tail effective sample sizes, as Vehtari, Gelman, Simpson, Carpenter & Bürkner
define them (2021, "Rank-normalization, folding, and localization", arXiv 1903.08008; the same
numbers as arviz's ``rhat(method="rank")``, ``ess(method="bulk"|"tail")``)."""

from __future__ import annotations

import math

import numpy as np
import torch


def _split(draws: np.ndarray) -> np.ndarray:
    """Each chain cut into its first and second half: [2 · chains, n // 2] (Vehtari et al. §4.1)."""
    half = draws.shape[1] // 2
    return np.concatenate([draws[:, :half], draws[:, draws.shape[1] - half :]], axis=0)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..N over all entries, ties sharing their average rank."""
    flat = values.ravel()
    _, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    below = np.cumsum(counts) - counts
    return (below + (counts + 1) / 2)[inverse].reshape(values.shape)


def _rank_normalise(values: np.ndarray) -> np.ndarray:
    """Normal scores of the pooled ranks with Blom's offset 3/8 (Vehtari et al. eq. 14)."""
    ranks = _average_ranks(values)
    probabilities = (ranks - 3 / 8) / (values.size - 2 * 3 / 8 + 1)
    return torch.special.ndtri(torch.from_numpy(probabilities)).numpy()


def _classic_rhat(chains: np.ndarray) -> float:
    """√(var⁺ / W) of already split chains (BDA3 eq. 11.4)."""
    n = chains.shape[1]
    within = chains.var(axis=1, ddof=1).mean()
    between = n * chains.mean(axis=1).var(ddof=1)
    if within == 0:
        return float("nan")
    return float(np.sqrt((between / within + n - 1) / n))


def _usable(draws: np.ndarray, min_chains: int) -> bool:
    return draws.ndim == 2 and draws.shape[0] >= min_chains and draws.shape[1] >= 4 and bool(np.isfinite(draws).all())


def rhat(draws: np.ndarray) -> float:
    """Rank-normalised split R-hat: the larger of the bulk R-hat (on rank-normalised draws) and
    the tail R-hat (on rank-normalised |draw − median|). 1 for mixed chains; NaN when undefined."""
    draws = np.asarray(draws, dtype=np.float64)
    if not _usable(draws, min_chains=2):
        return float("nan")
    split = _split(draws)
    bulk = _classic_rhat(_rank_normalise(split))
    tail = _classic_rhat(_rank_normalise(np.abs(split - np.median(split))))
    return max(bulk, tail)


def _autocovariance(chains: np.ndarray) -> np.ndarray:
    """Biased autocovariance of each chain at every lag, by FFT."""
    n = chains.shape[1]
    centred = chains - chains.mean(axis=1, keepdims=True)
    size = 1 << (2 * n - 1).bit_length()
    spectrum = np.fft.rfft(centred, size, axis=1)
    return np.fft.irfft(spectrum * np.conj(spectrum), size, axis=1)[:, :n] / n


def _ess(chains: np.ndarray) -> float:
    """ESS of (already split) chains with Geyer's initial positive and monotone sequences
    (Vehtari et al. §3.2, their eq. 10; the multi-chain autocorrelation of BDA3 eq. 11.7)."""
    m, n = chains.shape
    if np.ptp(chains) < np.finfo(float).resolution:
        return float(chains.size)
    acov = _autocovariance(chains)
    mean_var = acov[:, 0].mean() * n / (n - 1)
    var_plus = mean_var * (n - 1) / n + (chains.mean(axis=1).var(ddof=1) if m > 1 else 0.0)
    rho = np.zeros(n)
    rho[0] = even = 1.0
    rho[1] = odd = 1.0 - (mean_var - acov[:, 1].mean()) / var_plus
    t = 1
    while t < n - 3 and even + odd > 0:  # initial positive sequence
        even = 1.0 - (mean_var - acov[:, t + 1].mean()) / var_plus
        odd = 1.0 - (mean_var - acov[:, t + 2].mean()) / var_plus
        if even + odd >= 0:
            rho[t + 1], rho[t + 2] = even, odd
        t += 2
    last = t - 2
    if even > 0:
        rho[last + 1] = even
    for t in range(1, last - 1, 2):  # initial monotone sequence
        if rho[t + 1] + rho[t + 2] > rho[t - 1] + rho[t]:
            rho[t + 1] = rho[t + 2] = (rho[t - 1] + rho[t]) / 2
    tau = -1.0 + 2.0 * rho[: last + 1].sum() + rho[last + 1 : last + 2].sum()
    tau = max(tau, 1 / math.log10(chains.size))
    return float("nan") if np.isnan(rho).any() else float(chains.size / tau)


def ess_bulk(draws: np.ndarray) -> float:
    """Bulk effective sample size: the ESS of the rank-normalised split chains."""
    draws = np.asarray(draws, dtype=np.float64)
    if not _usable(draws, min_chains=1):
        return float("nan")
    return _ess(_rank_normalise(_split(draws)))


def ess_tail(draws: np.ndarray) -> float:
    """Tail effective sample size: the smaller ESS of the indicators draw ≤ q5% and draw ≤ q95%."""
    draws = np.asarray(draws, dtype=np.float64)
    if not _usable(draws, min_chains=1):
        return float("nan")
    return min(_ess(_split((draws <= np.quantile(draws, q)).astype(np.float64))) for q in (0.05, 0.95))
