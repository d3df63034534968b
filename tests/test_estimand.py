"""The estimator's target at a finite n, computed without sampling (llc/validation/estimand.py):
checked against closed forms, and the sampler checked against it where the target is not λ."""

import math

import pytest

from grokscope.llc import estimate_llc
from grokscope.llc.validation.estimand import crossing_estimand, regular_estimand
from grokscope.llc.validation.suite import normal_crossing_case, regular_case, run_case


def _data(powers):
    return normal_crossing_case(powers).build()[1]


def test_the_grid_matches_the_gaussian_closed_form_of_a_linear_crossing():
    # (0, 1): y = w₂·x, w₁ only localised. The posterior of w₂ is Gaussian with precision
    # P = 2nβ Sxx + γ and mean μ = 2nβ Sxy / P, so E[nβ(w₂² Sxx − 2w₂ Sxy)] = nβ(Sxx(μ² + 1/P) − 2μ Sxy).
    x, y = _data((0, 1))
    nbeta, gamma = 1000 / math.log(1000), 1.0
    sxx, sxy = float((x.double() ** 2).mean()), float((x.double() * y.double()).mean())
    precision = 2 * nbeta * sxx + gamma
    mu = 2 * nbeta * sxy / precision
    exact = nbeta * (sxx * (mu * mu + 1 / precision) - 2 * mu * sxy)
    assert crossing_estimand((0, 1), x, y, nbeta, gamma) == pytest.approx(exact, rel=1e-6)


def test_the_grid_has_converged():
    x, y = _data((2, 3))
    fine = crossing_estimand((2, 3), x, y, 144.8, 1.0, points=6001)
    assert crossing_estimand((2, 3), x, y, 144.8, 1.0, points=2001) == pytest.approx(fine, rel=1e-4)


def test_the_regular_estimand_tends_to_d_over_2_and_falls_with_gamma():
    x = regular_case(d=6).build()[1][0]
    assert regular_estimand(x, 1e7, 1.0) == pytest.approx(3.0, rel=1e-5)
    assert regular_estimand(x, 100.0, 10.0) < regular_estimand(x, 100.0, 1.0) < 3.0


def test_higher_order_crossings_sit_below_their_learning_coefficient_at_devinterps_n():
    # the reason the normal crossings with both powers ≥ 2 read low: the target itself, not the chains
    x, y = _data((2, 3))
    assert crossing_estimand((2, 3), x, y, 1000 / math.log(1000), 1.0) < 0.8 / 6


@pytest.mark.slow
def test_settled_chains_on_a_crossing_reach_the_estimand_not_lambda_and_say_so():
    row = run_case(normal_crossing_case((2, 3)), auto=False, epsilon=2.5e-4, n_steps=20_000, chains=20)
    assert not any(f.startswith(("not settled", "chains disagree")) for f in row["flags"]), row["flags"]
    assert row["status"] == "unreliable" and any(f.startswith("bounded by the localisation") for f in row["flags"])
    assert abs(row["estimand_error"]) <= 0.10, (row["estimate"], row["estimand"])
    assert abs(row["estimate"] - row["estimand"]) <= 4 * row["mcse"] + 0.05 * row["estimand"]
    assert row["relative_error"] < -0.15  # against λ = 1/6


def _elasticity_of_regular(nbeta, gamma, x):
    h = 1.01
    return (math.log(regular_estimand(x, nbeta, gamma * h)) - math.log(regular_estimand(x, nbeta, gamma / h))) / (2 * math.log(h))


@pytest.mark.parametrize("gamma, flagged", [(500.0, True), (1.0, False)])
def test_the_elasticity_in_gamma_from_the_draws_matches_the_closed_form(gamma, flagged):
    model, (x, y) = regular_case(d=6).build()
    nbeta = x.shape[0] / math.log(x.shape[0])
    entry = estimate_llc(model, (x, y), loss="mse", gamma=gamma, epsilon=2.5e-4, n_steps=6000, batch_size=500, chains=8).entries[0]
    exact = _elasticity_of_regular(nbeta, gamma, x)
    assert abs(entry.gamma_elasticity - exact) <= 3 * entry.gamma_elasticity_se + 0.03, (entry.gamma_elasticity, exact)
    assert any(f.startswith("bounded by the localisation") for f in entry.flags) == flagged, entry.flags
    assert (entry.status == "unreliable") if flagged else abs(exact) < 0.01
