"""Kernels against straightforward per-parameter implementations of their formulas (REFERENCE §2, §7)."""

import json
from dataclasses import replace

import pytest
import torch
from pydantic import Field

from grokscope.llc.sampling.kernels import (
    KERNELS,
    SGLD,
    ChainSettings,
    KernelOptions,
    Masked,
    RMSpropSGLD,
    project_out,
    unit_directions,
)
from grokscope.llc.sampling.observers import MalaAcceptance, join_blocks, potential


def _tree(seed, shapes=((3, 4, 2), (3, 5))):
    g = torch.Generator().manual_seed(seed)
    return {f"p{i}": torch.randn(s, generator=g) for i, s in enumerate(shapes)}


SETTINGS = dict(epsilon=[1e-3, 3e-3, 1e-2], gamma=[5.0, 1.0, 0.0], nbeta=[120.0, 50.0, 10.0], weight_decay=[0.0, 0.01, 0.1])


def _chain(tree, b):
    return {n: t[b] for n, t in tree.items()}


def test_sgld_step_is_lau_et_al_per_chain():
    w0, grad, noise = _tree(0), _tree(1), _tree(2)
    settings = ChainSettings.broadcast(3, **SETTINGS)
    kernel = SGLD()
    state = kernel.init(w0, settings)
    anchor = {n: t.clone() for n, t in w0.items()}
    state = kernel.step(state, grad, noise)  # first step from w* ...
    state = kernel.step(state, grad, noise)  # ... and one from elsewhere
    for b in range(3):
        eps, gamma, nbeta, wd = (SETTINGS[k][b] for k in ("epsilon", "gamma", "nbeta", "weight_decay"))
        for n in w0:
            w = anchor[n][b]
            for _ in range(2):
                w = w - eps / 2 * (nbeta * grad[n][b] + gamma * (w - anchor[n][b]) + wd * w) + eps**0.5 * noise[n][b]
            assert torch.allclose(state.w[n][b], w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("adapt_steps", [0, 2])
def test_rmsprop_sgld_equals_the_reference_formula_element_by_element(adapt_steps):
    """0: V follows every gradient; 2: only the first two, then the preconditioner stays fixed."""
    alpha, eps_rms = 0.99, 0.1
    w0 = _tree(0)
    grads = [_tree(10 + t) for t in range(4)]
    noises = [_tree(20 + t) for t in range(4)]
    kernel = RMSpropSGLD(alpha, eps_rms, adapt_steps)
    state = kernel.init(w0, ChainSettings.broadcast(3, **SETTINGS))
    for g, xi in zip(grads, noises):
        state = kernel.step(state, g, xi)
    for b in range(3):
        eps, gamma, nbeta, wd = (SETTINGS[k][b] for k in ("epsilon", "gamma", "nbeta", "weight_decay"))
        for n in w0:
            for index in range(w0[n][b].numel()):  # one scalar parameter at a time, in float64
                anchor = w0[n][b].flatten()[index].item()
                w, v = anchor, 0.0
                for t, (g_t, xi_t) in enumerate(zip(grads, noises)):
                    g, xi = g_t[n][b].flatten()[index].item(), xi_t[n][b].flatten()[index].item()
                    if adapt_steps == 0 or t < adapt_steps:
                        v = alpha * v + (1 - alpha) * g * g
                    G = 1 / (v**0.5 + eps_rms)
                    w = w - eps / 2 * G * (nbeta * g + gamma * (w - anchor) + wd * w) + eps**0.5 * G**0.5 * xi  # wd preconditioned too
                got = state.w[n][b].flatten()[index].item()
                assert abs(got - w) <= 1e-5 * max(1.0, abs(w)), (n, b, index, got, w)


def test_kernels_terms_reassemble_the_step():
    w0, grad, noise = _tree(0), _tree(1), _tree(2)
    for kernel in (SGLD(), RMSpropSGLD()):
        state = kernel.init(w0, ChainSettings.broadcast(3, **SETTINGS))
        state = kernel.step(state, grad, noise)  # away from w*, so every term is non-zero
        terms = kernel.terms(state, grad)
        moved = kernel.step(state, grad, noise)
        for n in w0:
            expected = state.w[n] - terms.drift()[n] + terms.noise_scale[n] * noise[n]
            assert torch.allclose(moved.w[n], expected, rtol=1e-5, atol=1e-6), kernel.name


def test_masked_entries_never_move_for_any_kernel():
    w0, grad, noise = _tree(0), _tree(1), _tree(2)
    mask = {"p0": torch.rand(4, 2, generator=torch.Generator().manual_seed(5)) > 0.5}
    for name in KERNELS:
        inner = SGLD() if name == "sgld" else RMSpropSGLD()
        kernel = Masked(inner, mask)
        state = kernel.init(w0, ChainSettings.broadcast(3, **SETTINGS))
        for _ in range(5):
            state = kernel.step(state, grad, noise)
        frozen = ~mask["p0"].expand(3, -1, -1)
        assert torch.equal(state.w["p0"][frozen], w0["p0"][frozen])
        assert (state.w["p0"][~frozen] != w0["p0"][~frozen]).all()
        assert not torch.equal(state.w["p1"], w0["p1"])  # tensors without a mask move freely


def test_projection_leaves_no_component_along_the_direction():
    w, anchor, grad = _tree(0), _tree(1), _tree(2)
    direction = unit_directions(grad)
    projected = project_out(w, anchor, direction)
    along = sum(((projected[n] - anchor[n]) * direction[n]).flatten(1).sum(-1) for n in w)
    assert along.abs().max() < 1e-5


def test_mala_accepts_small_steps_on_a_gaussian_and_rejects_huge_ones():
    # U(w) = ½||w||² (nβ = 1, L = ½||w||², γ = 0, w* = 0): exact potential and gradient.
    g = torch.Generator().manual_seed(0)

    class Gaussian:  # the objective's losses_and_grads for L(w) = ½||w||², whatever the batch
        @staticmethod
        def losses_and_grads(w, fixed, x, y):
            return 0.5 * w["x"].square().sum(-1), {"x": w["x"].clone()}

    def acceptance(kernel, eps, steps):
        settings = ChainSettings.broadcast(512, epsilon=eps, gamma=0.0, nbeta=1.0, weight_decay=0.0)
        state = kernel.init({"x": torch.zeros(512, 10)}, settings)
        state = type(state)(**{**state.__dict__, "w": {"x": torch.randn(512, 10, generator=g)}})
        observer = MalaAcceptance(kernel, Gaussian(), {}, start=0, every=1, n_chains=512, device=torch.device("cpu"))
        for step in range(steps):
            loss, grad = Gaussian.losses_and_grads(state.w, {}, None, None)
            observer.observe(step, state, loss, grad, None, (torch.empty(0), torch.empty(0)))
            state = kernel.step(state, grad, {"x": torch.randn(512, 10, generator=g)})
        return join_blocks([observer.result()])["mala_acceptance"].mean().item()

    assert acceptance(SGLD(), 1e-3, 2) > 0.99
    assert acceptance(SGLD(), 3.5, 2) < 0.2
    # RMSprop's preconditioner changes from step to step (so even small moves are not exactly
    # reversible) and shrinks large steps on its own: once V has settled, small ε is accepted
    # almost always and a huge ε clearly less often.
    assert acceptance(RMSpropSGLD(), 1e-3, 50) > 0.95
    assert acceptance(RMSpropSGLD(), 3.5, 50) < 0.7


def test_potential_uses_each_chains_settings():
    w = {"x": torch.ones(2, 3)}
    anchor = {"x": torch.zeros(2, 3)}
    settings = ChainSettings.broadcast(2, epsilon=1e-3, gamma=[2.0, 0.0], nbeta=[10.0, 1.0], weight_decay=[0.0, 4.0])
    state = SGLD().init(anchor, settings)
    state = type(state)(**{**state.__dict__, "w": w})
    u = potential(torch.tensor([1.0, 1.0]), state)
    assert u.tolist() == [10.0 + 0.5 * 2.0 * 3, 1.0 + 0.5 * 4.0 * 3]


def test_chain_settings_broadcast_scalars_and_refuse_wrong_lengths():
    from grokscope import ConfigError

    settings = ChainSettings.broadcast(3, epsilon=1e-3, gamma=[1.0, 2.0, 3.0], nbeta=10.0, weight_decay=0.0)
    assert settings.epsilon.tolist() == [1e-3] * 3 and settings.gamma.tolist() == [1.0, 2.0, 3.0]
    import pytest

    with pytest.raises(ConfigError, match="gamma: 2 values for 3 chains"):
        ChainSettings.broadcast(3, epsilon=1e-3, gamma=[1.0, 2.0], nbeta=10.0, weight_decay=0.0)


def test_rmsprop_sgld_samples_the_stated_weight_decay_prior():
    """With no loss gradient and no localisation the target is the prior N(0, 1/wd) whatever the
    preconditioner: every drift term is preconditioned like the noise (REFERENCE §7). Adding
    weight decay outside G would give a variance of G/wd, here 10 times too wide."""
    wd, eps = 2.0, 5e-3
    kernel = RMSpropSGLD(0.99, 0.1)  # a zero gradient leaves V = 0, so G = 1 / 0.1 = 10
    w0 = {"w": torch.zeros(1, 20000)}
    state = kernel.init(w0, ChainSettings.broadcast(1, epsilon=eps, gamma=0.0, nbeta=1.0, weight_decay=wd))
    zero, gen = {"w": torch.zeros(1, 20000)}, torch.Generator().manual_seed(0)
    for _ in range(600):  # the relaxation time is 2 / (eps G wd) = 20 steps
        state = kernel.step(state, zero, {"w": torch.randn(1, 20000, generator=gen)})
    shrink = 1 - eps / 2 * 10 * wd
    exact = eps * 10 / (1 - shrink**2)  # the discretised chain's stationary variance, 1/wd to O(eps)
    assert abs(state.w["w"].var().item() - exact) < 0.05 * exact and abs(exact - 1 / wd) < 0.05 / wd


class ToyOptions(KernelOptions):
    toy_scale: float = Field(0.5, gt=0.0, description="scales the noise")


class Toy(SGLD):
    """A kernel from outside the package: SGLD with its noise scaled (one file, one registry line)."""

    name = "toy"
    Options = ToyOptions

    def __init__(self, scale: float):
        self.scale = scale

    @classmethod
    def from_options(cls, options: ToyOptions) -> "Toy":
        return cls(options.toy_scale)

    def step(self, state, loss_grad, noise):
        return super().step(state, loss_grad, {n: self.scale * z for n, z in noise.items()})

    def terms(self, state, loss_grad):
        terms = super().terms(state, loss_grad)
        return replace(terms, noise_scale={n: self.scale * s for n, s in terms.noise_scale.items()})


def test_a_kernel_registered_from_outside_runs_through_the_command_line_with_its_own_flag(tmp_path, tiny_config, monkeypatch):
    from cli_helper import run_cli

    from grokscope import train

    run = train(tiny_config(), tmp_path / "run", progress=False)
    monkeypatch.setitem(KERNELS, "toy", Toy)
    common = ["llc", run.path, "--epsilon", "1e-3", "--steps", "40", "--max-steps", "40", "--chains", "2", "--batch-size", "8",
              "--checkpoints", "-1", "--json"]
    toy = run_cli(*common, "--sampler", "toy", "--toy-scale", "0.25")
    assert toy.returncode == 0, toy.stderr
    settings = json.loads(toy.stdout)["settings"]
    assert (settings["sampler"], settings["toy_scale"]) == ("toy", 0.25)
    plain = json.loads(run_cli(*common).stdout)
    assert json.loads(toy.stdout)["checkpoints"][0]["llc_per_chain"] != plain["checkpoints"][0]["llc_per_chain"]
    wrong = run_cli(*common, "--toy-scale", "0.25")  # sgld has no such setting
    assert wrong.returncode == 2 and "toy_scale is a setting of the toy kernel, not of sgld" in wrong.stderr
