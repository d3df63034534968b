"""SGLD's update with the noise drawn inside it (llc/sampling/fused.py): taken on a CPU when no
observer reads the noise, and the same numbers as the kernel's own passes, bit for bit."""

import pytest
import torch

from grokscope import native
from grokscope.llc.sampling import fused, loop

from leaving import estimate_with_a_leaver, small_run

pytestmark = pytest.mark.skipif(native.load("llc/sampling/noise_native.c") is None, reason="no C compiler: no fused step")

SETTINGS = dict(gamma=5.0, epsilon=1e-3, n_steps=40, max_steps=640, batch_size=16, chains=3, save_samples=3, mala_every=3)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return small_run(tmp_path_factory.mktemp("fused") / "run", embed_dim=5, hidden_size=7)


def _estimate(run, **extra):
    result = estimate_with_a_leaver(run, {**SETTINGS, **extra})
    return [(e.llc_per_chain, e.loss_trace, e.mala_acceptance, e.steps_used) for e in result.entries], result.samples


@pytest.mark.parametrize("extra", [{}, {"params": "linear2"}, {"weight_decay": 0.3, "nbeta": 40.0}])
def test_the_fused_step_gives_the_kernels_numbers(run, monkeypatch, extra):
    calls = []
    real = fused.FusedSGLDStep.for_loop

    def counted(*args):
        step = real(*args)
        calls.append(step is not None)
        return step

    monkeypatch.setattr(loop.FusedSGLDStep, "for_loop", counted)
    fast, fast_samples = _estimate(run, **extra)
    assert calls and all(calls)  # every block took the fused path
    monkeypatch.setattr(loop.FusedSGLDStep, "for_loop", lambda *args: None)
    plain, plain_samples = _estimate(run, **extra)
    assert fast == plain
    assert torch.equal(fast_samples, plain_samples)
    assert len({steps for *_, steps in plain}) > 1  # the batch changed shape on the way


def test_observers_that_read_the_noise_and_other_kernels_keep_the_plain_step(run, monkeypatch):
    calls = []
    real = fused.FusedSGLDStep.for_loop
    monkeypatch.setattr(loop.FusedSGLDStep, "for_loop", lambda *args: calls.append(real(*args)) or calls[-1])
    _estimate(run, step_metrics=True)  # StepNorms reads the noise
    _estimate(run, sampler="rmsprop_sgld", epsilon=1e-5)
    assert calls and not any(calls)
