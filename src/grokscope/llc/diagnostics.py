"""Chain health: split R-hat and effective sample size (Gelman et al., BDA3 §11.4-11.5;
Vehtari et al. 2021, arXiv 1903.08008), over post-burn-in loss traces [chains, draws]."""

from __future__ import annotations

import numpy as np


def _split(draws: np.ndarray) -> np.ndarray:
    half = draws.shape[1] // 2
    return np.concatenate([draws[:, :half], draws[:, draws.shape[1] - half :]], axis=0)


def split_rhat(draws: np.ndarray) -> float:
    """Split R-hat of ``draws`` [chains, n]; 1 for well-mixed chains, > 1.01 is a warning sign."""
    chains = _split(np.asarray(draws, dtype=np.float64))
    n = chains.shape[1]
    if n < 2:
        return float("nan")
    within = chains.var(axis=1, ddof=1).mean()
    between = n * chains.mean(axis=1).var(ddof=1)
    if within == 0:
        return float("nan")
    var_plus = (n - 1) / n * within + between / n
    return float(np.sqrt(var_plus / within))


def effective_sample_size(draws: np.ndarray) -> float:
    """ESS of ``draws`` [chains, n] with Geyer's initial monotone sequence (BDA3 eq. 11.8)."""
    chains = _split(np.asarray(draws, dtype=np.float64))
    m, n = chains.shape
    if n < 4:
        return float("nan")
    centred = chains - chains.mean(axis=1, keepdims=True)
    size = 1 << (2 * n - 1).bit_length()
    spectrum = np.fft.rfft(centred, size, axis=1)
    autocov = np.fft.irfft(spectrum * np.conj(spectrum), size, axis=1)[:, :n] / n
    within = chains.var(axis=1, ddof=1).mean()
    var_plus = (n - 1) / n * within + chains.mean(axis=1).var(ddof=1) if m > 1 else within
    if var_plus == 0:
        return float("nan")
    rho = 1.0 - (within - autocov.mean(axis=0)) / var_plus
    rho[0] = 1.0
    tau, previous_pair = -1.0, np.inf
    for t in range(0, n - 1, 2):
        pair = rho[t] + rho[t + 1]
        if pair < 0:
            break
        pair = min(pair, previous_pair)  # initial monotone sequence
        tau += 2 * pair
        previous_pair = pair
    return float(m * n / max(tau, 1e-12))
