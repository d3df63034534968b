"""Health flags of one LLC estimate, read from its chains alone (no true λ needed): each flag is a
one-line reason (REFERENCE §2: traces that settle above L_n(w*) without drifting, chains that agree,
MALA acceptance near 0.9). The cut-offs live in ``grokscope.thresholds``."""

from __future__ import annotations

import math

import numpy as np

from ..thresholds import (
    BELOW_INIT_MAX_FRACTION,
    DRIFT_TOLERANCE,
    ESS_MIN,
    MALA_MIN_ACCEPTANCE,
    R_HAT_MAX,
)


def drift(post: np.ndarray, nbeta: float) -> tuple[float, float]:
    """λ̂ of the second half of the post-burn-in draws minus λ̂ of the first half [chains, draws],
    averaged over chains, and its standard error across chains (NaN with one chain)."""
    half = post.shape[1] // 2
    per_chain = nbeta * (post[:, half:].mean(axis=1) - post[:, :half].mean(axis=1))
    se = per_chain.std(ddof=1) / math.sqrt(len(per_chain)) if len(per_chain) > 1 else float("nan")
    return float(per_chain.mean()), float(se)


def health_flags(
    llc_mean: float | None, diverged_chains: int, chains: int, r_hat: float | None = None, ess_bulk: float | None = None,
    ess_tail: float | None = None, mala_acceptance: float | None = None, frac_below_init: float | None = None,
    drift_change: float | None = None, drift_se: float | None = None,
) -> list[str]:
    """Every reason to distrust an estimate; empty when it looks healthy."""
    flags = []
    if diverged_chains:
        flags.append(f"diverged: {diverged_chains} of {chains} chains reached a non-finite loss (lower epsilon)")
    if llc_mean is None:
        return flags
    if llc_mean <= 0:
        flags.append("negative λ̂: the chains sit below L_n(w*), so w* is not a local minimum")
    elif frac_below_init is not None and frac_below_init > BELOW_INIT_MAX_FRACTION:
        flags.append(f"draws below L_n(w*): {frac_below_init:.0%} of draws (> {BELOW_INIT_MAX_FRACTION:.0%}); w* may not be a local minimum")
    if r_hat is not None and math.isfinite(r_hat) and r_hat > R_HAT_MAX:
        flags.append(f"chains disagree: R-hat {r_hat:.3f} > {R_HAT_MAX}")
    ess = [v for v in (ess_bulk, ess_tail) if v is not None and math.isfinite(v)]
    if ess and min(ess) < ESS_MIN:
        flags.append(f"few effective draws: ESS {min(ess):.0f} < {ESS_MIN}")
    if mala_acceptance is not None and mala_acceptance < MALA_MIN_ACCEPTANCE:
        flags.append(f"MALA acceptance {mala_acceptance:.2f} < {MALA_MIN_ACCEPTANCE}: the step size is too large (λ̂ reads high)")
    if drift_change is not None and abs(drift_change) > DRIFT_TOLERANCE * abs(llc_mean) and not (
        drift_se is not None and math.isfinite(drift_se) and abs(drift_change) <= 3 * drift_se
    ):
        direction = "rising" if drift_change > 0 else "falling"
        flags.append(f"loss trace drifts: λ̂ still {direction} ({drift_change:+.3g} between the halves of the draws); "
                     "more steps or a larger epsilon")
    return flags
