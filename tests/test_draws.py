"""Draws for the ecosystem: arviz reads what the estimator sampled, and agrees with its diagnostics."""

import numpy as np
import pytest
from tiny import tiny_config

from grokscope import train
from grokscope.llc import estimate_llc
from grokscope.llc.draws import save_draws

az = pytest.importorskip("arviz")

SETTINGS = dict(gamma=5.0, epsilon=1e-3, n_steps=300, max_steps=300, batch_size=16, chains=4)


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    run = train(tiny_config(), tmp_path_factory.mktemp("draws") / "run", progress=False)
    data = run.dataset()
    params = [run.state_dict(step) for step in run.steps[-2:]]
    return estimate_llc(run.new_model(), (data.train_x, data.train_y), params, checkpoint_ids=run.steps[-2:],
                        training_steps=run.steps[-2:], probes={"test": (data.test_x, data.test_y)}, probe_every=20,
                        probe_per_sample=True, **SETTINGS)


def test_arviz_diagnostics_of_the_llc_trace_equal_ours(result):
    for k, entry in enumerate(result.entries):
        data = result.to_arviz(k)
        assert data.posterior["llc"].shape == (4, entry.steps_used - entry.burn_in)
        assert float(az.rhat(data, var_names=["llc"], method="rank")["llc"]) == pytest.approx(entry.r_hat, rel=1e-9)
        assert float(az.ess(data, var_names=["llc"], method="bulk")["llc"]) == pytest.approx(entry.ess_bulk, rel=1e-9)
        per_chain = data.posterior["llc"].mean("draw").values
        assert np.allclose(per_chain, entry.llc_per_chain, rtol=1e-5)


def test_per_pair_losses_are_the_log_likelihood_at_kept_probe_steps(result):
    entry, data = result.entries[0], result.to_arviz(0)
    loglik = data.log_likelihood["test"]
    steps = loglik["draw"].values
    assert steps.min() >= entry.burn_in and steps.max() < entry.steps_used and (np.diff(steps) == 20).all()
    assert loglik.shape[0] == 4 and loglik.shape[2] == result.probe_samples["test"].shape[2]
    assert (loglik.values <= 0).all()  # −cross-entropy


def test_draws_round_trip_through_netcdf(result, tmp_path):
    pytest.importorskip("h5netcdf")
    paths = save_draws(result, tmp_path / "draws")
    assert [p.name for p in paths] == [f"draws-{e.step}.nc" for e in result.entries]
    back = az.from_netcdf(paths[1])
    assert np.array_equal(back.posterior["llc"].values, result.to_arviz(1).posterior["llc"].values)
    assert back.posterior.attrs["status"] == result.entries[1].status
    assert not list((tmp_path / "draws").glob(".*"))  # no temporary file left behind
