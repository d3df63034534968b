"""The sampling loop's step over buffers that stay put (llc/sampling/graphed.py): on a GPU it is
captured as CUDA graphs; here it runs eagerly, and must give the plain loop's numbers bit for bit."""

import pytest
import torch

from grokscope.llc.sampling import graphed

from leaving import estimate_with_a_leaver, small_run

SETTINGS = dict(gamma=5.0, epsilon=1e-3, n_steps=40, max_steps=640, batch_size=16, chains=2, step_metrics=True,
                save_samples=3, mala_every=3, floor_probe=False)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return small_run(tmp_path_factory.mktemp("graphed") / "run")


def _estimate(run, **extra):
    result = estimate_with_a_leaver(run, {**SETTINGS, **extra})
    return [(e.llc_per_chain, e.loss_trace, e.mala_acceptance, e.step_metrics, e.steps_used) for e in result.entries], result.samples


def warmed(fn):
    """A stand-in for the CUDA capture: its warm-up calls, then the function itself as the replay."""
    fn(), fn()
    return fn


@pytest.mark.parametrize("capture", [graphed.eager, warmed])
@pytest.mark.parametrize("extra", [{}, {"sampler": "rmsprop_sgld", "epsilon": 1e-5}, {"params": "linear2"},
                                   {"sampler": "rmsprop_sgld", "epsilon": 1e-5, "rmsprop_adapt_steps": 50}])
def test_the_static_step_gives_the_plain_loops_numbers(run, monkeypatch, capture, extra):
    plain, plain_samples = _estimate(run, **extra)
    monkeypatch.setattr(graphed, "step_capture", lambda device: capture)
    static, static_samples = _estimate(run, **extra)
    assert static == plain
    assert torch.equal(static_samples, plain_samples)
    assert len({steps for *_, steps in plain}) > 1  # some chains went on past the first block, some did not


def test_graphs_are_for_gpus_and_can_be_switched_off(monkeypatch):
    assert graphed.step_capture(torch.device("cpu")) is None
    assert graphed.step_capture(torch.device("cuda")) is graphed.cuda_graph
    monkeypatch.setenv("GROKSCOPE_CUDA_GRAPHS", "0")
    assert graphed.step_capture(torch.device("cuda")) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine: the CUDA graphs are not exercised")
def test_the_cuda_graphs_give_the_eager_gpu_loops_numbers(run, monkeypatch):
    graphs, _ = _estimate(run, device="cuda")
    monkeypatch.setenv("GROKSCOPE_CUDA_GRAPHS", "0")
    plain, _ = _estimate(run, device="cuda")
    for (ours, *_), (theirs, *_) in zip(graphs, plain):
        assert ours == pytest.approx(theirs, rel=1e-5)
