"""Whether an estimate's chains have settled, read from their loss traces [chains, steps] alone.

- **Burn-in** by MSER-5 (White 1997, "An effective truncation heuristic for bias reduction in
  simulation output"; White, Cobb & Spratt 2000): the trace averaged over chains is cut into
  batches of 5 steps, and the burn-in is the truncation d that minimises the squared standard error
  of the mean of what is kept, Σ_{i>d} (Z_i − Z̄_d)² / (N − d)², searched over the first half.
- **Batch means** (Flegal & Jones 2010, "Batch means and spectral variance estimators in MCMC"):
  the kept draws averaged over windows, so the minibatch noise, which is independent from step to
  step, shrinks by √window and the slow movement of the chains shows. R-hat and ESS of the batch
  means are the statistics "not drowned in minibatch noise"; the Monte-Carlo standard error (MCSE)
  of λ̂ comes from them, or from the spread of the chains' own λ̂ when that is larger.
- **Halves and doubling**: λ̂ of the first against the second half of the kept draws, and λ̂ of the
  whole run against the same chains' run of half the steps (each with its own burn-in), both paired
  per chain; a change larger than SETTLE_TOLERANCE of λ̂ and than two standard errors of the paired
  differences means the chains are still moving.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .convergence import _ess, _split, ess_bulk, rhat

MSER_BATCH = 5
BATCH_MEANS_PER_CHAIN = 100  # windows per chain: enough for R-hat, each long enough to average minibatch noise away


def mser_burn_in(traces: np.ndarray) -> int:
    """The MSER-5 truncation (in steps, at most half the trace) of traces [chains, steps]."""
    mean = np.nanmean(traces, axis=0) if traces.shape[0] else traces[0]
    n = len(mean) // MSER_BATCH
    if n < 4:
        return 0
    z = mean[: n * MSER_BATCH].reshape(n, MSER_BATCH).mean(axis=1)
    tail_sum = np.cumsum(z[::-1])[::-1]
    tail_sq = np.cumsum((z * z)[::-1])[::-1]
    kept = np.arange(n, 0, -1, dtype=np.float64)  # N − d for d = 0..n−1
    sse = tail_sq - tail_sum**2 / kept
    score = sse / kept**2
    return int(np.argmin(score[: n // 2 + 1])) * MSER_BATCH


def batch_means(post: np.ndarray) -> tuple[np.ndarray, int]:
    """Window means of draws [chains, draws] ([chains, windows]) and the window length."""
    window = max(1, post.shape[1] // BATCH_MEANS_PER_CHAIN)
    count = post.shape[1] // window
    return post[:, post.shape[1] - count * window :].reshape(post.shape[0], count, window).mean(axis=2), window


@dataclass
class Settling:
    """What the traces say about an estimate: burn-in, λ̂ per chain over the kept draws, the batch
    means' R-hat, effective draws and the MCSE of λ̂, and the two paired changes."""

    burn_in: int
    per_chain: np.ndarray  # λ̂ of each (non-diverged) chain
    r_hat_batch: float
    ess_batch: float  # effective draws by the batch means: their ESS times the window
    mcse: float
    halves: tuple[float, float]  # (λ̂ of the second half − of the first, its standard error)
    doubling: tuple[float, float] | None  # (λ̂ − λ̂ of the first half of the steps, its standard error)


def paired_change(after: np.ndarray, before: np.ndarray) -> tuple[float, float]:
    """Mean of after − before over chains and its standard error (NaN with one chain)."""
    differences = after - before
    se = differences.std(ddof=1) / math.sqrt(len(differences)) if len(differences) > 1 else float("nan")
    return float(differences.mean()), float(se)


def settle(traces: np.ndarray, init_loss: float, nbeta: float, burn_in: int | None) -> Settling:
    """Settledness of finite traces [chains, steps] (``burn_in``: a fixed one, or None for MSER-5)."""
    steps = traces.shape[1]
    cut = mser_burn_in(traces) if burn_in is None else burn_in
    post = traces[:, cut:]
    per_chain = nbeta * (post.mean(axis=1) - init_loss)
    means, window = batch_means(post)
    usable = means.shape[1] >= 4
    ess_means = _ess(_split(means)) if usable else float("nan")
    pooled_sd = means.std(ddof=1) if means.size > 1 else float("nan")
    # chains that disagree on a slow mode make the batch means' MCSE too small: the spread of the
    # chains' own λ̂ bounds it from below
    chain_sem = float(per_chain.std(ddof=1) / math.sqrt(len(per_chain))) if len(per_chain) > 1 else 0.0
    half = post.shape[1] // 2
    halves = paired_change(nbeta * (post[:, half:].mean(axis=1) - init_loss), nbeta * (post[:, :half].mean(axis=1) - init_loss))
    doubling = None
    if steps >= 8 * MSER_BATCH:
        first = traces[:, : steps // 2]
        first_cut = mser_burn_in(first) if burn_in is None else min(burn_in, first.shape[1] - 1)
        doubling = paired_change(per_chain, nbeta * (first[:, first_cut:].mean(axis=1) - init_loss))
    return Settling(
        burn_in=cut,
        per_chain=per_chain,
        r_hat_batch=rhat(means) if usable else float("nan"),
        ess_batch=ess_bulk(means) * window if usable else float("nan"),
        mcse=max(float(nbeta * pooled_sd / math.sqrt(ess_means)) if usable and ess_means > 0 else float("nan"), chain_sem),
        halves=halves,
        doubling=doubling,
    )
