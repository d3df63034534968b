"""The status of one LLC estimate, read from its chains alone (no true λ needed), with a one-line
reason per finding. The cut-offs live in ``grokscope.thresholds``.

- ``ok``: settled and precise;
- ``imprecise``: settled, but the Monte-Carlo error is large (its MCSE is reported);
- ``unreliable``: a bias (divergence, MALA, w* not a minimum, a step size λ̂ depends on, a λ̂
  bounded by the localisation) or chains
  that have not settled: the number may be wrong;
- ``none``: no estimate.

Findings of the kinds ``unsettled`` and ``imprecise`` are cured by more steps (the estimate
continues its chains while its budget lasts); ``bias`` findings are not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ...thresholds import (
    BELOW_INIT_MAX_FRACTION,
    ESS_MIN,
    GAMMA_ELASTICITY_MAX,
    MALA_MIN_ACCEPTANCE,
    MCSE_MAX_FRACTION,
    R_HAT_MAX,
    SETTLE_TOLERANCE,
)

STATUSES = ("ok", "imprecise", "unreliable", "none")  # in order of severity
KIND_STATUS = {"imprecise": "imprecise", "unsettled": "unreliable", "bias": "unreliable", "none": "none"}


# how the reasons of kind "bias" begin (assess writes them): evidence that a step size is wrong
BOUNDED = "bounded by the localisation"  # how the reason of a λ̂ that depends on γ begins (calibrate reads it too)
LEFT = "chains left the basin"  # how the reason of chains worse than a constant predictor begins
BIAS_REASONS = ("diverged", "chains did not move", "negative λ̂", "draws below", "MALA acceptance", BOUNDED, LEFT)


def shows_bias(reasons: list[str]) -> bool:
    """Whether an estimate's reasons include a bias, which more steps cannot cure."""
    return any(reason.startswith(BIAS_REASONS) for reason in reasons)


def worst(*statuses: str) -> str:
    return max(statuses, key=STATUSES.index)


def llc_value(entry: dict) -> str:
    """λ̂ ± std of a stored entry, with its status when that is not ok: "620.1 ± 15.5 (unreliable)"."""
    if entry.get("llc_mean") is None:
        return f"none ({entry.get('reason') or 'no estimate'})"
    text = f"{entry['llc_mean']:.1f} ± {entry['llc_std'] or 0:.1f}"
    status = entry.get("status", "ok")
    return text if status == "ok" else f"{text} ({status})"


def status_line(statuses: list[str]) -> str:
    """"all 26 estimates ok", or "3 of 26 estimates not ok (2 unreliable, 1 none)"."""
    bad = [s for s in statuses if s != "ok"]
    if not bad:
        return f"all {len(statuses)} estimates ok"
    counts = ", ".join(f"{bad.count(s)} {s}" for s in STATUSES[1:] if s in bad)
    return f"{len(bad)} of {len(statuses)} estimates not ok ({counts})"


@dataclass
class Findings:
    """Reasons to distrust an estimate, each with its kind (a key of KIND_STATUS)."""

    items: list[tuple[str, str]] = field(default_factory=list)

    def add(self, kind: str, reason: str) -> None:
        self.items.append((kind, reason))

    @property
    def status(self) -> str:
        return worst("ok", *(KIND_STATUS[kind] for kind, _ in self.items))

    @property
    def reasons(self) -> list[str]:
        return [reason for _, reason in self.items]

    @property
    def more_steps_help(self) -> bool:
        """Whether continuing the chains could make the estimate ok: no bias, something to settle."""
        kinds = {kind for kind, _ in self.items}
        return bool(kinds) and kinds <= {"unsettled", "imprecise"}


def _moved(change: float, se: float, llc: float) -> bool:
    """A paired change larger than SETTLE_TOLERANCE of λ̂ and than two of its standard errors."""
    return abs(change) > SETTLE_TOLERANCE * abs(llc) and not (math.isfinite(se) and abs(change) <= 2 * se)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def assess(
    llc_mean: float | None, diverged_chains: int, chains: int, r_hat: float | None = None, ess_bulk: float | None = None,
    ess_tail: float | None = None, mala_acceptance: float | None = None, frac_below_init: float | None = None,
    r_hat_batch: float | None = None, ess_batch: float | None = None, mcse: float | None = None,
    halves: tuple[float, float] | None = None, doubling: tuple[float, float] | None = None, chain_spread: float | None = None,
    gamma_elasticity: tuple[float, float, float] | None = None, quadratic_floor: float | None = None,
    losses: tuple[float, float, float | None] | None = None,
) -> Findings:
    """Every reason to distrust an estimate, each of its kind; no findings: ``ok``. ``chain_spread``:
    the standard deviation of the chains' λ̂; an R-hat above R_HAT_MAX makes the estimate unsettled
    when the chains' λ̂ also differ by more than SETTLE_TOLERANCE of λ̂ (like the other settling
    checks: significant and material). A smaller disagreement is already in the MCSE.
    ``gamma_elasticity``: d ln λ̂ / d ln γ, its standard error and the critical multiple of it
    (llc/diagnostics/localisation.py); judged only on chains found settled. ``quadratic_floor``: λ̂ of
    the Hessian's quadratic part at w* (llc/diagnostics/quadratic.py); λ̂ materially below it is a
    chain that has not relaxed the Hessian's slow modes. ``losses``: L_n(w*), the chains' mean loss
    after burn-in and the loss of the best constant prediction (None for a custom loss); where w* fits
    the data far better than a constant (under half its loss) and the chains fit worse than one, they
    have left w*'s basin and λ̂ measures where they went."""
    found = Findings()
    if diverged_chains:
        found.add("bias", f"diverged: {diverged_chains} of {chains} chains reached a non-finite loss (lower epsilon)")
    if llc_mean is None:
        found.add("none", "no estimate: no chain kept a finite loss")
        return found
    if _finite(mcse) and abs(llc_mean) <= 2 * mcse:
        found.add("bias", f"chains did not move: λ̂ {llc_mean:.3g} is within two Monte-Carlo errors ({mcse:.3g}) of 0, so the "
                          "loss never rose above L_n(w*) (the step size is too small to explore)")
    elif llc_mean <= 0:
        found.add("bias", "negative λ̂: the chains sit below L_n(w*), so w* is not a local minimum")
    elif _finite(frac_below_init) and frac_below_init > BELOW_INIT_MAX_FRACTION:
        found.add("bias", f"draws below L_n(w*): {frac_below_init:.0%} of draws (> {BELOW_INIT_MAX_FRACTION:.0%}); w* may not be a local minimum")
    if losses is not None and _finite(losses[2]) and losses[0] < losses[2] / 2 and losses[1] > losses[2]:
        found.add("bias", f"{LEFT}: their mean loss {losses[1]:.3g} exceeds a constant prediction's {losses[2]:.3g} (w*'s: "
                          f"{losses[0]:.3g}), so λ̂ is not of w*'s neighbourhood (a larger gamma or a smaller epsilon)")
    if _finite(mala_acceptance) and mala_acceptance < MALA_MIN_ACCEPTANCE:
        found.add("bias", f"MALA acceptance {mala_acceptance:.2f} < {MALA_MIN_ACCEPTANCE}: the step size is too large (λ̂ reads high)")
    material = not _finite(chain_spread) or chain_spread > SETTLE_TOLERANCE * abs(llc_mean)
    for name, value in (("R-hat", r_hat), ("R-hat of the batch means", r_hat_batch)):
        if _finite(value) and value > R_HAT_MAX and material:
            spread = f", λ̂ spread {chain_spread:.3g} across chains" if _finite(chain_spread) else ""
            found.add("unsettled", f"chains disagree: {name} {value:.3f} > {R_HAT_MAX}{spread}")
    for what, change in (("between the halves of the draws", halves), ("when the steps doubled", doubling)):
        if change is not None and _moved(*change, llc_mean):
            direction = "rising" if change[0] > 0 else "falling"
            found.add("unsettled", f"not settled: λ̂ still {direction} ({change[0]:+.3g} {what}, > {SETTLE_TOLERANCE:.0%})")
    if _finite(quadratic_floor) and 0 < llc_mean < quadratic_floor and _moved(quadratic_floor - llc_mean, mcse or math.nan, quadratic_floor):
        found.add("unsettled", f"below the quadratic floor: λ̂ {llc_mean:.3g} < {quadratic_floor:.3g}, the λ̂ of the Hessian's quadratic part "
                               f"at w* (by > {SETTLE_TOLERANCE:.0%}): its slowest modes have not relaxed")
    settled = not any(kind == "unsettled" for kind, _ in found.items)  # drifting chains fake a covariance
    if settled and gamma_elasticity is not None and gamma_elasticity[0] + gamma_elasticity[2] * gamma_elasticity[1] < -GAMMA_ELASTICITY_MAX:
        found.add("bias", f"{BOUNDED}: d ln λ̂/d ln γ = {gamma_elasticity[0]:.2f} ± {gamma_elasticity[1]:.2f} "
                          f"(< −{GAMMA_ELASTICITY_MAX}): the chains spread as far as γ lets them, so λ̂ is this γ's figure and "
                          "may lie well below λ (a smaller γ or more data)")
    ess = [v for v in (ess_bulk, ess_tail, ess_batch) if _finite(v)]
    if ess and min(ess) < ESS_MIN:
        found.add("imprecise", f"few effective draws: ESS {min(ess):.0f} < {ESS_MIN}")
    if _finite(mcse) and MCSE_MAX_FRACTION * abs(llc_mean) < mcse < abs(llc_mean) / 2:
        found.add("imprecise", f"Monte-Carlo error: MCSE {mcse:.3g} > {MCSE_MAX_FRACTION:.0%} of λ̂")
    return found
