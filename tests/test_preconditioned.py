"""Chains preconditioned by the curvature (llc/sampling/preconditioned.py) and the calibration's
fallback to them when plain SGLD passes no step size (llc/tuning/preconditioned.py)."""

import math

import pytest
import torch
from torch import nn

from grokscope.llc.config import sgld_config
from grokscope.llc.diagnostics.quadratic import curvature, quadratic_floor
from grokscope.llc.sampling.objective import BatchedObjective
from grokscope.llc.sampling.observers import join_blocks
from grokscope.llc.sampling.preconditioned import PreconditionedChains
from grokscope.llc.tuning import auto, calibrate, preconditioned
from grokscope.llc.tuning.calibrate import calibrate_llc
from grokscope.llc.tuning.preconditioned import estimate_preconditioned, preconditioned_grid

NBETA = 1000 / math.log(1000)


def _regression():
    """A least-squares fit y ≈ x·w, four inputs of distinct variances: λ = 2, every mode curved."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 4, generator=generator) * torch.tensor([20.0, 3.0, 0.5, 0.2]).sqrt()
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(1000, 1, generator=generator)
    model = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.linalg.lstsq(x.double(), y.double()).solution.T.float())
    return model, (x, y)


def _chains(model, data, epsilons, slots=None):
    params = {n: p.detach() for n, p in model.named_parameters()}
    spectrum = curvature(model, params, list(params), *data, "mse")
    return PreconditionedChains(BatchedObjective(model, "mse"), params, {}, *data, *spectrum, NBETA, 1.0, 0.005,
                                epsilons, 50, seed=3, slots=slots)


def test_continued_chains_equal_one_run_and_chains_of_a_slot_share_their_noise():
    model, data = _regression()
    whole = _chains(model, data, [1e-4, 1e-4, 2e-4], slots=[0, 0, 1]).run(60)
    parts = _chains(model, data, [1e-4, 1e-4, 2e-4], slots=[0, 0, 1])
    joined = join_blocks([parts.run(25), parts.run(35)])
    for key in ("losses", "anchor_distance", "anchor_distance_steps"):
        assert torch.equal(joined[key], whole[key]), key
    assert whole["anchor_distance_steps"].tolist() == list(range(0, 60, 10))
    assert torch.equal(joined["mala_acceptance"], whole["mala_total"] / whole["mala_count"])
    losses = whole["losses"]
    assert torch.equal(losses[:, 0], losses[:, 1]) and not torch.equal(losses[:, 0], losses[:, 2])
    assert bool(((joined["mala_acceptance"] > 0.5) & (joined["mala_acceptance"] <= 1)).all())
    assert float(whole["anchor_distance"][0].abs().max()) == 0 and bool((whole["anchor_distance"][1:] > 0).all())  # from w*
    kept = _chains(model, data, [1e-4, 1e-4, 2e-4], slots=[0, 0, 1])
    kept.run(25)
    kept.take([2])  # the chain of slot 1 alone goes on drawing what it drew beside the others
    assert torch.equal(kept.run(35)["losses"][:, 0], losses[25:, 2])


def _settings(**extra):
    return sgld_config(**{**dict(gamma=1.0, chains=4, batch_size=50, n_steps=200, max_steps=200), **extra})


def test_a_preconditioned_grid_reads_the_floor_of_a_regular_model_and_records_its_health(monkeypatch):
    monkeypatch.setattr(preconditioned, "PRECONDITIONED_STEPS", 2000)
    monkeypatch.setattr(preconditioned, "PRECONDITIONED_MAX_STEPS", 8000)
    model, data = _regression()
    params = {n: p.detach() for n, p in model.named_parameters()}
    floor = quadratic_floor(curvature(model, params, list(params), *data, "mse")[0], NBETA, 1.0)
    assert 1.9 < floor < 2.0  # every mode stiff against γ: λ = P/2 = 2
    grid = preconditioned_grid(model, data, params, _settings(), "mse", NBETA, epsilons=[2e-4, 4e-4])
    assert [setting["epsilon"] for setting, _ in grid] == [2e-4, 4e-4]
    for _, entry in grid:
        assert entry.quadratic_floor == pytest.approx(floor)
        assert 2000 <= entry.steps_used <= 8000 and entry.mala_acceptance > 0.8
        assert entry.llc_mean == pytest.approx(floor, abs=0.1 * floor + 3 * entry.mcse), entry.flags
        assert abs(entry.gamma_elasticity) < 0.1  # every mode stiff against γ: λ̂ does not depend on it
        assert entry.status != "ok" or entry.steps_used < 8000  # a grid cell that ran to its cap did so unsettled


@pytest.mark.slow
def test_when_plain_sgld_passes_no_step_size_the_calibration_chooses_preconditioned_chains(monkeypatch):
    monkeypatch.setattr(preconditioned, "PRECONDITIONED_STEPS", 4000)
    monkeypatch.setattr(preconditioned, "PRECONDITIONED_MAX_STEPS", 64000)
    model, data = _regression()
    # steps far too small for plain SGLD's chains to leave w*: every cell biased ("did not move")
    report = calibrate_llc(model, data, None, _settings(chains=16), epsilons=[1e-12, 2e-12], loss="mse")
    assert all(cell["biased"] for cell in report["cells"])
    chosen = report["recommended"]
    assert chosen["sampler"] == "preconditioned" and chosen["status"] == "ok", chosen
    assert chosen["why"].startswith("plain SGLD: no step size passes") and "preconditioned chains:" in chosen["why"]
    assert chosen["llc_mean"] == pytest.approx(2.0, rel=0.1)
    assert chosen["epsilon"] in [cell["epsilon"] for cell in report["preconditioned"]["cells"]]
    # a custom loss has no curvature: no fallback, no estimate
    assert calibrate_llc(model, data, None, _settings(), epsilons=[1e-12, 2e-12],
                         loss=lambda out, y: (out - y).square().mean())["recommended"]["epsilon"] is None

    # `epsilon="auto"` then estimates every parameter set with the chosen preconditioned chains
    monkeypatch.setattr(calibrate, "BRACKET_EPSILONS", (1e-12,))
    broken = {n: torch.full_like(p, math.nan) for n, p in model.named_parameters()}
    good = {n: p.detach() for n, p in model.named_parameters()}
    result = auto.estimate_llc_auto(model, data, [broken, good], _settings(chains=16), "mse")
    assert result.settings["sampler"] == "preconditioned" and result.settings["calibration"]["recommended"]["sampler"] == "preconditioned"
    assert result.entries[0].status == "none" and result.entries[0].llc_mean is None
    assert result.entries[1].llc_mean == pytest.approx(2.0, rel=0.1) and result.entries[1].checkpoint_id == 1
    probes = auto.estimate_llc_auto(model, data, [good], _settings(chains=16), "mse", probes={"all": data})
    assert probes.entries[0].status == "none" and "do not record probes" in probes.entries[0].reason


def test_when_the_preconditioned_chains_pass_no_step_size_either_the_reason_names_both_grids(monkeypatch):
    monkeypatch.setattr(preconditioned, "PRECONDITIONED_STEPS", 40)
    monkeypatch.setattr(preconditioned, "PRECONDITIONED_MAX_STEPS", 80)
    model, data = _regression()
    report = calibrate_llc(model, data, None, _settings(), epsilons=[1e-12, 2e-12], loss="mse")
    chosen = report["recommended"]
    assert chosen["epsilon"] is None and report["preconditioned"] is not None
    assert chosen["why"].startswith("plain SGLD: no step size passes") and "; preconditioned chains: " in chosen["why"]
    assert chosen["flags"] == [chosen["why"]]
    # 80 steps are too few for any cell to settle: the reason says that more steps would need a higher cap
    assert all(cell["steps_used"] == 80 and not cell["settled"] for cell in report["preconditioned"]["cells"])
    assert chosen["why"].endswith("(0 biased, 4 not settled); their cap is 80 steps")


def test_estimates_of_preconditioned_chains_are_those_of_each_set_alone(monkeypatch):
    monkeypatch.setattr(preconditioned, "PRECONDITIONED_STEPS", 500)
    monkeypatch.setattr(preconditioned, "PRECONDITIONED_MAX_STEPS", 500)
    model, data = _regression()
    good = {n: p.detach() for n, p in model.named_parameters()}
    shifted = {n: p + 0.01 for n, p in good.items()}
    together = estimate_preconditioned(model, data, [good, shifted], _settings(), "mse", [7, 9], [70, 90], 2e-4)
    alone = estimate_preconditioned(model, data, [shifted], _settings(), "mse", [9], [90], 2e-4)
    assert together.entries[1].llc_per_chain == alone.entries[0].llc_per_chain
    assert [e.step for e in together.entries] == [70, 90] and together.settings["epsilon"] == 2e-4
