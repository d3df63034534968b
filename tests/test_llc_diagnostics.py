"""Chain diagnostics against arviz (the reference implementation of Vehtari et al. 2021) on fixed
synthetic chains, and the health flags on cases whose answer we know."""

import math

import numpy as np
import pytest
import torch

from grokscope.llc.diagnostics.convergence import ess_bulk, ess_tail, rhat
from grokscope.llc.diagnostics.health import assess
from grokscope.llc.diagnostics.settling import mser_burn_in, settle
from grokscope.llc.sampling.objective import CrossEntropy, MeanSquaredError
from grokscope.thresholds import (
    ESS_MIN,
    MALA_MIN_ACCEPTANCE,
    MCSE_MAX_FRACTION,
    R_HAT_MAX,
    SETTLE_TOLERANCE,
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


def _findings(**changes):
    healthy = dict(llc_mean=10.0, diverged_chains=0, chains=4, r_hat=1.001, ess_bulk=2000.0, ess_tail=1500.0, mala_acceptance=0.9,
                   frac_below_init=0.0, r_hat_batch=1.01, ess_batch=900.0, mcse=0.1, halves=(0.1, 0.2), doubling=(0.1, 0.2),
                   chain_spread=1.0)
    return assess(**healthy | changes)


def test_each_finding_fires_on_its_own_cause_names_it_and_sets_the_status():
    assert _findings().items == [] and _findings().status == "ok"
    cases = {
        "diverged": (dict(diverged_chains=1), "unreliable", False),
        "negative λ̂": (dict(llc_mean=-1.0, mcse=0.01), "unreliable", False),
        "did not move": (dict(llc_mean=0.005, mcse=0.007), "unreliable", False),
        "draws below": (dict(frac_below_init=0.6), "unreliable", False),
        "step size is too large": (dict(mala_acceptance=MALA_MIN_ACCEPTANCE - 0.01), "unreliable", False),
        "chains disagree: R-hat": (dict(r_hat=R_HAT_MAX + 0.01), "unreliable", True),
        "R-hat of the batch means": (dict(r_hat_batch=R_HAT_MAX + 0.01), "unreliable", True),
        "between the halves": (dict(halves=(-(SETTLE_TOLERANCE + 0.05) * 10.0, 0.1)), "unreliable", True),
        "when the steps doubled": (dict(doubling=((SETTLE_TOLERANCE + 0.05) * 10.0, 0.1)), "unreliable", True),
        "few effective draws": (dict(ess_batch=ESS_MIN - 1), "imprecise", True),
        "Monte-Carlo error": (dict(mcse=(MCSE_MAX_FRACTION + 0.01) * 10.0), "imprecise", True),
        "below the quadratic floor": (dict(quadratic_floor=10.0 * (1 + SETTLE_TOLERANCE + 0.05)), "unreliable", True),
        "left the basin": (dict(losses=(0.9, 4.1, 3.97)), "unreliable", False),
    }
    for words, (change, status, more_steps_help) in cases.items():
        found = _findings(**change)
        assert len(found.reasons) == 1 and words in found.reasons[0], (words, found.reasons)
        assert (found.status, found.more_steps_help) == (status, more_steps_help), words
    assert assess(None, 2, 2).status == "none"
    assert _findings(mcse=1.0, mala_acceptance=0.5).status == "unreliable"  # the worst finding sets the status


def test_chains_that_disagree_by_less_than_the_tolerance_are_not_unsettled():
    """R-hat above its cut-off with the chains' λ̂ within SETTLE_TOLERANCE of each other: immaterial."""
    immaterial = _findings(r_hat_batch=R_HAT_MAX + 0.05, chain_spread=0.5 * SETTLE_TOLERANCE * 10.0)
    assert immaterial.status == "ok"
    assert _findings(r_hat_batch=R_HAT_MAX + 0.05, chain_spread=2 * SETTLE_TOLERANCE * 10.0).status == "unreliable"


def test_a_floor_within_the_tolerance_or_the_monte_carlo_error_or_below_the_estimate_is_no_finding():
    assert _findings(quadratic_floor=10.0 * (1 + 0.5 * SETTLE_TOLERANCE)).items == []
    assert [r.split(":")[0] for r in _findings(quadratic_floor=12.0, mcse=1.5).reasons] == ["Monte-Carlo error"]  # 2 below: 2 MCSE
    assert _findings(quadratic_floor=5.0).items == []


def test_chains_worse_than_a_constant_prediction_left_the_basin_only_where_w_star_fits_far_better():
    assert _findings(losses=(0.9, 3.5, 3.97)).items == []  # worse than w*, better than a constant
    assert _findings(losses=(2.5, 4.1, 3.97)).items == []  # w* itself barely better than a constant (early training)
    assert _findings(losses=(0.0, 0.3, 0.0)).items == []  # w* is a constant (a zero teacher)
    assert _findings(losses=(0.9, 4.1, None)).items == []  # a custom loss


def test_the_constant_prediction_loss_of_each_builtin_loss():
    labels = torch.tensor([0, 0, 1, 2])
    assert CrossEntropy().constant_loss(labels) == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))
    logits = torch.tensor([math.log(0.5), math.log(0.25), math.log(0.25)]).expand(1, 4, 3)  # the frequencies as a prediction
    assert CrossEntropy().value(logits, labels[None]).item() == pytest.approx(CrossEntropy().constant_loss(labels), rel=1e-6)
    targets = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    assert MeanSquaredError().constant_loss(targets) == pytest.approx(0.5)  # (1² + 1² + 0 + 0) / 4 around the column means


def test_a_change_within_the_chain_to_chain_noise_is_not_flagged():
    assert _findings(halves=(2.0, 1.0), doubling=(-2.0, 1.0)).items == []  # 20% of λ̂ but only 2 standard errors


def test_mser_cuts_a_transient_and_keeps_a_stationary_trace():
    rng = np.random.default_rng(0)
    settled = rng.normal(size=(4, 2000))
    rising = settled + 5.0 * np.exp(-np.arange(2000) / 100.0)[None] * -1  # starts 5 below and relaxes in ~100 steps
    assert mser_burn_in(settled) <= 100
    assert 150 <= mser_burn_in(rising) <= 1000  # the transient is still 1.1 (twice the noise of the mean) at 150
    assert mser_burn_in(np.linspace(0, 1, 4000)[None].repeat(2, 0)) == 2000  # never settles: at most half is cut


def test_settle_measures_the_paired_changes_and_the_mcse():
    rng = np.random.default_rng(1)
    noise = rng.normal(size=(4, 4000))
    flat = settle(1.0 + 0.01 * noise, init_loss=0.9, nbeta=100.0, burn_in=0)
    assert flat.per_chain == pytest.approx([10.0] * 4, abs=0.1)
    assert abs(flat.halves[0]) < 3 * flat.halves[1] + 0.05 and abs(flat.doubling[0]) < 3 * flat.doubling[1] + 0.05
    # independent draws: the MCSE is nβ σ / √(all draws), the batch means' R-hat near 1
    assert flat.mcse == pytest.approx(100 * 0.01 / np.sqrt(16000), rel=0.25) and flat.r_hat_batch < 1.02
    creeping = settle(1.0 + np.linspace(0, 0.05, 4000)[None] + 0.01 * noise, init_loss=0.9, nbeta=100.0, burn_in=0)
    assert creeping.halves[0] == pytest.approx(2.5, rel=0.1) and creeping.doubling[0] > 0.5


def test_a_slow_mode_shows_in_the_batch_means_not_in_the_raw_draws():
    """Each chain sits at its own level (unsettled), hidden under 20 times larger minibatch noise."""
    rng = np.random.default_rng(2)
    levels = np.array([-1.0, -0.3, 0.3, 1.0])[:, None] * 0.05
    traces = levels + rng.normal(size=(4, 20000))
    found = settle(traces, init_loss=-10.0, nbeta=1.0, burn_in=0)
    assert rhat(traces) < R_HAT_MAX < found.r_hat_batch
