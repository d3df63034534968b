"""The sampling loop's step over buffers that stay put (llc/sampling/graphed.py): on a GPU it is
captured as CUDA graphs; here it runs eagerly, and must give the plain loop's numbers bit for bit."""

import pytest
import torch

from grokscope import build_config, train
from grokscope.llc import estimate_llc
from grokscope.llc.sampling import graphed

SETTINGS = dict(gamma=5.0, epsilon=1e-3, n_steps=40, max_steps=640, batch_size=16, chains=2, step_metrics=True,
                save_samples=3, mala_every=3)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    sets = {"p": 11, "train_frac": 0.7, "embed_dim": 4, "hidden_size": 8, "n_steps": 200, "n_checkpoints": 2, "batch_size": 16}
    return train(build_config("example", overrides=sets), tmp_path_factory.mktemp("graphed") / "run", progress=False)


def _estimate(run, **extra):
    """Every checkpoint, and the last again at 100 times the step size: that set leaves the batch
    after its first block (MALA rejects it) while the others go on, so the batch changes shape."""
    data = run.dataset()
    params = [run.state_dict(s) for s in run.steps]
    settings = {**SETTINGS, **extra}
    epsilons = [settings["epsilon"]] * len(params) + [100 * settings["epsilon"]]
    result = estimate_llc(run.new_model(), (data.train_x, data.train_y), params + params[-1:],
                          checkpoint_ids=run.steps + run.steps[-1:], per_set=[{"epsilon": e} for e in epsilons], **settings)
    return [(e.llc_per_chain, e.loss_trace, e.mala_acceptance, e.step_metrics, e.steps_used) for e in result.entries], result.samples


def warmed(fn):
    """A stand-in for the CUDA capture: its warm-up calls, then the function itself as the replay."""
    fn(), fn()
    return fn


@pytest.mark.parametrize("capture", [graphed.eager, warmed])
@pytest.mark.parametrize("extra", [{}, {"sampler": "rmsprop_sgld", "epsilon": 1e-5}, {"params": "linear2"}])
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
