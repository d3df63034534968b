"""The floor probe (llc/diagnostics/floor_probe.py): its preconditioned chains sample the localised
posterior (on a quadratic model they read the floor, which is λ̂ there), its verdict, and what it
does to an estimate's status."""

import math

import pytest
import torch
from torch import nn

from grokscope.llc import estimate_llc
from grokscope.llc import estimator
from grokscope.llc.config import sgld_config
from grokscope.llc.tuning.calibrate import calibrate_llc
from grokscope.llc.diagnostics import floor_probe
from grokscope.llc.diagnostics.floor_probe import PLATEAU, at_floor, judge, probe_model, verdict
from grokscope.llc.diagnostics.quadratic import curvature, quadratic_floor

GAMMA = 1000.0  # strong enough that the probe's small steps relax every mode within a few thousand steps


def _regression(variances=(20.0, 3.0, 0.5, 0.05)):
    """A least-squares fit y ≈ x·w with inputs of these variances (the curvature's modes, 2·nβ·variance)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 4, generator=generator) * torch.tensor(variances).sqrt()
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(1000, 1, generator=generator)
    model = nn.Linear(4, 1, bias=False)
    seen = torch.tensor(variances) > 0  # an input that is always 0 leaves its weight at 0
    with torch.no_grad():
        model.weight.zero_()[:, seen] = torch.linalg.lstsq(x[:, seen].double(), y.double()).solution.T.float()
    return model, (x, y)


def _floor(model, data, nbeta):
    params = {n: p.detach() for n, p in model.named_parameters()}
    return quadratic_floor(curvature(model, params, list(params), *data, "mse")[0], nbeta, GAMMA)


def test_preconditioned_chains_read_the_floor_of_a_quadratic_posterior(monkeypatch):
    monkeypatch.setattr(floor_probe, "FLOOR_PROBE_STEPS", 6000)
    model, data = _regression()
    nbeta = 1000 / math.log(1000)
    floor = _floor(model, data, nbeta)
    assert 0.5 < floor < 1.5  # modes on both sides of γ: neither 0 nor P/2 = 2
    probe = probe_model(model, data, dict(model.named_parameters()), "mse", nbeta, GAMMA, 200, seed=0)
    assert probe["floor"] == pytest.approx(floor)
    assert probe["steps"] == 6000 and len(probe["runs"]) == 4
    for run in probe["runs"]:
        assert run["mala_acceptance"] > 0.9
        assert run["llc"] == pytest.approx(floor, abs=0.1 * floor + 3 * run["llc_se"]), run
    assert probe["verdict"] == "at the floor"


def test_the_verdict_reads_the_largest_step_size_in_the_band():
    runs = [dict(epsilon=1e-7, llc=10.0, llc_se=0.1, mala_acceptance=0.99), dict(epsilon=2e-7, llc=13.0, llc_se=0.2, mala_acceptance=0.96),
            dict(epsilon=4e-7, llc=30.0, llc_se=1.0, mala_acceptance=0.7)]
    assert verdict(runs, 10.0) == dict(verdict="plateau", epsilon=2e-7, llc=13.0, llc_se=0.2)
    assert verdict(runs, 12.8)["verdict"] == "at the floor"
    assert verdict(runs, 15.0)["verdict"] == "below the floor"
    assert verdict(runs[2:], 10.0)["verdict"] == "no step size in the band"
    noisy = [dict(epsilon=1e-7, llc=11.0, llc_se=0.6, mala_acceptance=0.99)]  # 10% above, within two standard errors
    assert verdict(noisy, 10.0)["verdict"] == "at the floor"


def test_a_plateau_makes_an_estimate_unreliable_and_says_why():
    flags = []
    assert judge("ok", flags, dict(verdict="at the floor", floor=10.0, llc=10.2, llc_se=0.1, epsilon=1e-7)) == "ok" and flags == []
    assert judge("ok", flags, dict(verdict="plateau", floor=10.0, llc=13.0, llc_se=0.2, epsilon=2e-7)) == "unreliable"
    assert len(flags) == 1 and flags[0].startswith(PLATEAU) and "13" in flags[0]


def test_only_estimates_at_a_floor_below_half_the_dimension_are_probed():
    assert at_floor(10.2, 10.0, 100) and not at_floor(11.0, 10.0, 100)  # beyond 5% of the floor
    assert not at_floor(10.0, 10.0, 20)  # Q = P/2: every direction is curved, λ = Q
    assert not at_floor(None, 10.0, 100) and not at_floor(10.0, None, 100)


@pytest.mark.slow
def test_the_estimator_probes_an_ok_estimate_at_its_floor_and_not_a_cell_of_the_calibration(monkeypatch):
    monkeypatch.setattr(floor_probe, "FLOOR_PROBE_STEPS", 4000)
    model, data = _regression((20.0, 3.0, 0.5, 0.0))  # one direction the loss does not see: λ = Q = 3/2 < P/2
    settings = dict(epsilon=2e-5, gamma=1.0, n_steps=8000, max_steps=16000, chains=16, batch_size=500)
    entry = estimate_llc(model, data, loss="mse", **settings).entries[0]
    assert entry.quadratic_floor == pytest.approx(1.5, rel=0.02) and at_floor(entry.llc_mean, entry.quadratic_floor, 4)
    assert entry.status == "ok" and entry.floor_probe is not None
    assert entry.floor_probe["verdict"] == "at the floor", entry.floor_probe

    def not_here(*args, **kwargs):
        raise AssertionError("probed")

    monkeypatch.setattr(estimator, "probe_floor", not_here)
    assert estimate_llc(model, data, loss="mse", **settings | dict(floor_probe=False)).entries[0].floor_probe is None
    cell = calibrate_llc(model, data, None, sgld_config(**settings), epsilons=[2e-5], loss="mse")["cells"][0]
    assert cell["status"] == "ok" and at_floor(cell["llc_mean"], cell["quadratic_floor"], 4)  # an estimate would be probed
