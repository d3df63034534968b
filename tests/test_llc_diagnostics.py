"""Chain diagnostics against arviz (the reference implementation of Vehtari et al. 2021) on fixed
synthetic chains, and the health flags on cases whose answer we know."""

import numpy as np
import pytest

from grokscope.llc.diagnostics import ess_bulk, ess_tail, rhat
from grokscope.llc.health import drift, health_flags
from grokscope.thresholds import (
    DRIFT_TOLERANCE,
    ESS_MIN,
    MALA_MIN_ACCEPTANCE,
    R_HAT_MAX,
)


def _ar1(rng, chains, n, phi):
    out = np.zeros((chains, n))
    noise = rng.normal(size=(chains, n))
    for t in range(1, n):
        out[:, t] = phi * out[:, t - 1] + noise[:, t]
    return out


def _chains():
    rng = np.random.default_rng(0)
    wide = rng.normal(size=(4, 1000))
    wide[0] *= 3
    shifted = rng.normal(size=(4, 1000))
    shifted[1] += 0.5
    return {
        "iid": rng.normal(size=(4, 1000)),
        "ar(0.9)": _ar1(rng, 4, 1000, 0.9),
        "one chain 3x wider": wide,
        "one chain shifted": shifted,
        "skewed, odd length": rng.exponential(size=(3, 501)),
        "ties": np.round(rng.normal(size=(4, 200)), 1),
        "trend": np.linspace(0, 2, 800)[None, :] + rng.normal(size=(4, 800)),
    }


@pytest.mark.parametrize("name", list(_chains()))
def test_rank_normalised_rhat_and_ess_equal_arviz(name):
    az = pytest.importorskip("arviz")
    draws = _chains()[name]
    assert rhat(draws) == pytest.approx(float(az.rhat(draws, method="rank")), rel=1e-10)
    assert ess_bulk(draws) == pytest.approx(float(az.ess(draws, method="bulk")), rel=1e-10)
    assert ess_tail(draws) == pytest.approx(float(az.ess(draws, method="tail")), rel=1e-10)


def test_the_folded_rhat_catches_a_chain_with_three_times_the_spread():
    draws = _chains()["one chain 3x wider"]
    half = draws.shape[1] // 2  # the classic split R-hat compares means only, and sees nothing
    split = np.concatenate([draws[:, :half], draws[:, half:]])
    n = split.shape[1]
    classic = np.sqrt(((n - 1) / n * split.var(axis=1, ddof=1).mean() + split.mean(axis=1).var(ddof=1)) / split.var(axis=1, ddof=1).mean())
    assert classic < 1.01 < R_HAT_MAX < rhat(draws)


def test_undefined_inputs_give_nan_not_an_error():
    assert np.isnan(rhat(np.ones((1, 100))))  # one chain: no between-chain variance
    assert np.isnan(rhat(np.full((4, 100), np.nan)))
    assert np.isnan(ess_bulk(np.zeros((4, 3))))


def _flags(**changes):
    healthy = dict(llc_mean=10.0, diverged_chains=0, chains=4, r_hat=1.001, ess_bulk=2000.0, ess_tail=1500.0, mala_acceptance=0.9,
                   frac_below_init=0.0, drift_change=0.1, drift_se=0.2)
    return health_flags(**healthy | changes)


def test_each_flag_fires_on_its_own_cause_and_names_it():
    assert _flags() == []
    cases = {
        "diverged": dict(diverged_chains=1), "negative λ̂": dict(llc_mean=-1.0), "draws below": dict(frac_below_init=0.6),
        "chains disagree": dict(r_hat=R_HAT_MAX + 0.01), "few effective draws": dict(ess_tail=ESS_MIN - 1),
        "step size is too large": dict(mala_acceptance=MALA_MIN_ACCEPTANCE - 0.01),
        "drifts": dict(drift_change=-(DRIFT_TOLERANCE + 0.05) * 10.0, drift_se=0.1),
    }
    for words, change in cases.items():
        flags = _flags(**change)
        assert len(flags) == 1 and words in flags[0], (words, flags)


def test_drift_within_the_chain_to_chain_noise_is_not_flagged():
    assert _flags(drift_change=2.0, drift_se=1.0) == []  # 20% of λ̂ but only 2 standard errors


def test_drift_measures_the_change_between_the_halves():
    post = np.concatenate([np.zeros((4, 50)), np.ones((4, 50))], axis=1)
    change, se = drift(post, nbeta=3.0)
    assert change == pytest.approx(3.0) and se == pytest.approx(0.0)
