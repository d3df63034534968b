"""Per-sample posterior statistics: the conventions are the derivatives they claim to be, the BIF ranks
training pairs as leave-one-out retraining does, and every statistic carries its chains' status."""

import json

import pytest
import torch
from cli_helper import run_cli as grokscope
from scipy.stats import spearmanr
from tiny import tiny_config

from grokscope import ConfigError, train
from grokscope.llc import estimate_llc
from grokscope.llc.config import sgld_config
from grokscope.posterior import posterior_statistics
from grokscope.posterior import estimate as posterior_estimate
from grokscope.posterior import statistics as stats
from grokscope.posterior.run import run_posterior, stored_results
from grokscope.posterior.retraining import leave_one_out_effects


def _tilted_mean(values: torch.Tensor, log_weights: torch.Tensor) -> torch.Tensor:
    weights = torch.softmax(log_weights, 0)
    return (weights[:, None] * values).sum(0)


def test_bif_and_susceptibility_are_the_derivatives_of_the_tilted_posterior_mean():
    generator = torch.Generator().manual_seed(0)
    draws = torch.randn(4000, 6, generator=generator, dtype=torch.float64) @ torch.randn(6, 6, generator=generator, dtype=torch.float64)
    beta, nbeta, h = 0.3, 12.0, 1e-6  # tolerance 1e-3: the tilt gives the 1/N covariance, ours the unbiased 1/(N − 1)
    # BIF(i -> φ): d E[φ] / d t where sample i's loss gets weight (1 + t) in the tempered likelihood.
    phi = draws[:, 4:]
    tilted = _tilted_mean(phi, -h * beta * draws[:, 1])
    derivative = (tilted - phi.mean(0)) / h
    assert torch.allclose(stats.influence(draws[:, :2], phi, beta)[1], derivative, rtol=1e-3)
    # χ_q: d E_h[φ] / d h under p_h ∝ p · exp(−h nβ (L_q − L_n)).
    train_loss, subsets = draws[:, 0], draws[:, 2:4]
    chi = stats.susceptibility(draws[:, 5], subsets, train_loss, nbeta)
    for q in range(2):
        tilted = _tilted_mean(draws[:, 5:6], -h * nbeta * (subsets[:, q] - train_loss))
        assert float(chi[q]) == pytest.approx(float((tilted - draws[:, 5].mean()) / h), rel=1e-3)


def test_the_monte_carlo_error_from_chains_is_the_standard_error_of_their_statistic():
    draws = torch.randn(64, 1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    error = stats.chain_mcse(list(draws.mean(1, keepdim=True)))
    assert error.shape == (1,) and float(error) == pytest.approx(1 / (64 * 1000) ** 0.5, rel=0.3)
    assert torch.isnan(stats.chain_mcse([draws[0, :1]])).all()


def test_kernel_correlation_and_variance_shares():
    generator = torch.Generator().manual_seed(1)
    draws = torch.randn(500, 12, generator=generator, dtype=torch.float64)
    kernel = stats.covariance(draws)
    assert torch.allclose(kernel, torch.cov(draws.T), atol=1e-12)
    assert torch.allclose(stats.correlation(kernel).diagonal(), torch.ones(12, dtype=torch.float64))
    labels = torch.arange(12) % 3
    blocky = torch.tensor([[1.0, -0.5, 0.2], [-0.5, 2.0, 0.3], [0.2, 0.3, -1.0]], dtype=torch.float64)[labels][:, labels]
    means, share = stats.block_fit(blocky, labels, 3)
    assert share == pytest.approx(1.0) and torch.allclose(means, blocky[:3, :3])
    assert stats.block_fit(stats.correlation(kernel), labels, 3)[1] < 0.5  # noise has little block structure


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return train(tiny_config(p=7, n_steps=300, n_checkpoints=2), tmp_path_factory.mktemp("posterior") / "run", progress=False)


SETTINGS = dict(epsilon=1e-3, gamma=5.0, n_steps=2000, chains=8, batch_size=16)


def test_bif_ranks_training_pairs_as_leave_one_out_retraining_does(tiny_run):
    data = tiny_run.dataset()
    x, y = data.all_pairs()
    trained = torch.arange(len(y)) < data.n_train
    anchor = tiny_run.state_dict(tiny_run.steps[-1])
    result = posterior_statistics(tiny_run.new_model(), (data.train_x, data.train_y), (x, y), anchor, trained=trained,
                                  components={}, draws_per_block=2000, **SETTINGS)
    bif = result.influence(0, ~trained)
    effects = leave_one_out_effects(tiny_run.new_model(), anchor, (data.train_x, data.train_y), (data.test_x, data.test_y),
                                    result.nbeta, SETTINGS["gamma"])
    rho, p_value = spearmanr(bif.numpy(), effects.numpy())
    assert len(bif) == data.n_train == 29
    assert rho > 0.3 and p_value < 0.05, (rho, p_value)


def test_whole_model_chains_are_the_llc_estimates_and_parts_carry_their_own_status(tiny_run):
    data = tiny_run.dataset()
    steps = tiny_run.steps[-2:]
    params = [tiny_run.state_dict(step) for step in steps]
    settings = dict(SETTINGS, n_steps=300, max_steps=600)
    result = posterior_statistics(tiny_run.new_model(), (data.train_x, data.train_y), None, params, checkpoint_ids=steps,
                                  training_steps=steps, classes={"parity": (data.train_y % 2, ["even", "odd"])}, **settings)
    plain = estimate_llc(tiny_run.new_model(), (data.train_x, data.train_y), params, checkpoint_ids=steps, **settings)
    assert [e.llc_mean for e in result.llc["whole"].entries] == [e.llc_mean for e in plain.entries]
    assert result.parts == ["whole", "embedding", "layer1", "output"]
    for k, c in enumerate(result.checkpoints):
        assert c.status == plain.entries[k].status and c.llc == plain.entries[k].llc_mean
        assert c.part_status == [result.llc[part].entries[k].status for part in result.parts]
        assert c.susceptibility.shape == (4, 2) and c.kernel.shape == (data.n_train, data.n_train)
        assert c.draws > 0 and torch.isfinite(c.loss_gain).all()
        assert c.susceptibility_mcse.shape == (4, 2) and (c.susceptibility_mcse > 0).all()


def test_per_sample_losses_are_thinned_to_fit_memory_or_refused(tiny_run, monkeypatch):
    data = tiny_run.dataset()
    inputs = (tiny_run.new_model(), (data.train_x, data.train_y))
    settings = dict(SETTINGS, n_steps=400, max_steps=400, components={})
    monkeypatch.setattr(posterior_estimate, "available_bytes", lambda device: 8 * 29 * 41 * 4 / posterior_estimate.MEMORY_SHARE)  # 41 records of 8 chains
    thinned = posterior_statistics(*inputs, **settings)
    assert thinned.settings["probe_every"] == 10 and thinned.settings["draws_per_block"] == 40  # 100 asked, 40 fit
    monkeypatch.setattr(posterior_estimate, "available_bytes", lambda device: 1000)
    with pytest.raises(ConfigError, match="per-sample losses .* need about"):
        posterior_statistics(*inputs, **settings)


def test_the_kernel_is_read_over_the_chosen_pairs(tiny_run):
    config = sgld_config(**dict(SETTINGS, n_steps=200, max_steps=200, chains=2))
    result = run_posterior(tiny_run, config, "-1", epsilon_auto=False, progress=False, components={})
    data = tiny_run.dataset()
    pairs = data.all_pairs()[0]
    shares = {}
    for name, chosen in (("train", result.trained), ("held-out", ~result.trained), ("all", torch.ones_like(result.trained))):
        stored, _ = stored_results(result, data.p, pairs, name)
        sums = (pairs[chosen, 0] + pairs[chosen, 1]).remainder(data.p)
        shares[name] = stored["checkpoints"][0]["kernel_share_sum"]
        assert shares[name] == stats.block_fit(result.correlation(0)[chosen][:, chosen], sums, data.p)[1]
        assert stored["settings"]["kernel_pairs"] == name
    assert len(set(shares.values())) == 3


def test_posterior_command_writes_results_figures_and_a_report_section(tiny_run):
    result = grokscope("posterior", str(tiny_run.path), "--steps", "200", "--chains", "2", "--batch-size", "16", "--no-auto",
                       "--pairs", "held-out")
    assert result.returncode == 0, result.stderr
    stored = json.loads(tiny_run.paths.posterior.read_text())
    assert stored["settings"]["kernel_pairs"] == "held-out"
    assert [row["step"] for row in stored["checkpoints"]] == tiny_run.steps
    assert stored["parts"] == ["whole", "embedding", "layer1", "output"]
    assert stored["status"].startswith("whole model: ") and "components alone: " in stored["status"]
    assert all(set(row["susceptibility"]) == set(stored["parts"]) for row in stored["checkpoints"])
    for stem in ("posterior_over_training", "posterior_kernel", "posterior_susceptibility"):
        assert tiny_run.paths.figure(stem).read_bytes().startswith(b"\x89PNG")
    assert grokscope("report", str(tiny_run.path)).returncode == 0
    assert "Which pairs teach which" in (tiny_run.path / "report.html").read_text()
    bad = grokscope("posterior", str(tiny_run.path), "--bins", "99", "--no-auto")
    assert bad.returncode == 2 and "--bins must be from 1 to 4" in bad.stderr and "Traceback" not in bad.stderr
