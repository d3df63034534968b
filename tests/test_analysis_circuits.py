"""Pizza/Clock metrics on weights built by hand to realise the logit formulas of REFERENCE §5."""

import math

import pytest
import torch
from torch import nn

from grokscope import ConfigError
from grokscope.analysis import circuit, fourier_modes
from grokscope.analysis.circuits import (
    all_pair_logits,
    distance_irrelevance,
    frequency_doubling,
    gradient_symmetricity,
    sum_dependence,
)
from grokscope.config import build_config
from grokscope.models import build_model


class Formula(nn.Module):
    """E_j = (cos wj, sin wj), w = 2πk/p; the unembedding reads the same circle."""

    def __init__(self, p: int, k: int):
        super().__init__()
        w = 2 * math.pi * k / p
        j = torch.arange(p, dtype=torch.float32)
        self.embedding = nn.Embedding(p, 2)
        with torch.no_grad():
            self.embedding.weight.copy_(torch.stack([torch.cos(w * j), torch.sin(w * j)], 1))

    def unembedding_matrix(self):
        return self.embedding.weight

    def forward(self, x):
        e = self.embedding.weight
        return self.forward_from_embeddings(e[x[:, 0]], e[x[:, 1]])

    def forward_from_embeddings(self, ea, eb, pre_unembed=False):
        features = self.features(ea, eb)
        return features if pre_unembed else features @ self.embedding.weight.T


class Clock(Formula):
    """Q_abc = cos(w(a + b − c)): the embeddings multiplied as complex numbers."""

    def features(self, ea, eb):
        return torch.stack([ea[:, 0] * eb[:, 0] - ea[:, 1] * eb[:, 1], ea[:, 1] * eb[:, 0] + ea[:, 0] * eb[:, 1]], 1)


class Pizza(Formula):
    """Q_abc = |cos(w(a − b)/2)| · cos(w(a + b − c)): from the sum E_a + E_b alone."""

    def features(self, ea, eb):
        h = ea + eb
        x, y = h[:, 0], h[:, 1]
        squared = (x * x + y * y).clamp_min(1e-12)
        doubled = torch.stack([x * x - y * y, 2 * x * y], 1) / squared.unsqueeze(1)
        return doubled * (squared.sqrt() / 2).unsqueeze(1)


P, K = 31, 5


def test_formulas_are_what_they_claim():
    a, b, c = torch.tensor([3, 7, 20]), torch.tensor([11, 2, 30]), torch.tensor([4, 9, 1])
    w = 2 * math.pi * K / P
    clock, pizza = Clock(P, K), Pizza(P, K)
    x = torch.stack([a, b], 1)
    expected_clock = torch.cos(w * (a + b - c))
    expected_pizza = torch.abs(torch.cos(w * (a - b) / 2)) * torch.cos(w * (a + b - c))
    assert torch.allclose(clock(x)[torch.arange(3), c], expected_clock, atol=1e-5)
    assert torch.allclose(pizza(x)[torch.arange(3), c], expected_pizza, atol=1e-5)


def test_pizza_formula_gets_pizza_verdict():
    metrics = circuit(Pizza(P, K), P, keys=[K])
    assert metrics.gradient_symmetricity == pytest.approx(1.0, abs=1e-5)
    assert metrics.distance_irrelevance == pytest.approx(0.0, abs=1e-5)
    assert metrics.verdict == "pizza"


def test_clock_formula_gets_clock_verdict():
    metrics = circuit(Clock(P, K), P, keys=[K])
    # ∂Q/∂E_a · ∂Q/∂E_b reduces to cos(w(a − b)): about 0 over random triples
    assert abs(metrics.gradient_symmetricity) < 0.3
    assert metrics.distance_irrelevance == pytest.approx(1.0)
    assert metrics.verdict == "clock"


class RadialClock(Clock):
    """A Clock whose input tokens sit at different radii r_j (the readout keeps the unit circle), so
    its correct logit r_a·r_b varies from pair to pair; the plain Clock's is constant, where distance
    irrelevance falls back to 1."""

    def __init__(self, p: int, k: int):
        super().__init__(p, k)
        self.readout = self.embedding.weight.detach().clone()
        radii = 1 + 0.5 * torch.rand(p, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            self.embedding.weight.mul_(radii.unsqueeze(1))

    def unembedding_matrix(self):
        return self.readout

    def forward_from_embeddings(self, ea, eb, pre_unembed=False):
        features = self.features(ea, eb)
        return features if pre_unembed else features @ self.readout.T


def test_a_clock_with_token_dependent_radii_reads_as_a_clock():
    metrics = circuit(RadialClock(P, K), P, keys=[K])
    assert metrics.distance_irrelevance > 0.9 and metrics.distance_irrelevance <= 1.0
    assert not any("same for every pair" in note for note in metrics.notes)  # not through the fallback
    assert metrics.verdict == "clock"


def test_distance_irrelevance_is_the_population_ratio():
    # Zhong et al. divide population standard deviations: a logit that ignores a − b reads exactly 1
    metrics = circuit(RadialClock(P, K), P, keys=[K])
    model = RadialClock(P, K)
    pairs = torch.cartesian_prod(torch.arange(P), torch.arange(P))
    with torch.no_grad():
        correct = model(pairs)[torch.arange(P * P), (pairs[:, 0] + pairs[:, 1]) % P].double()
    distance = (pairs[:, 0] - pairs[:, 1]) % P
    within = torch.stack([correct[distance == d].std(correction=0) for d in range(P)]).mean()
    assert metrics.distance_irrelevance == pytest.approx(float(within / correct.std(correction=0)), rel=1e-9)


def test_frequency_doubling_separates_the_formulas():
    clock, _ = frequency_doubling(Clock(P, K), P, [K])
    pizza, _ = frequency_doubling(Pizza(P, K), P, [K])
    assert clock < 1e-4  # a clock's readout holds frequency k only
    assert pizza > 0.1  # |cos(w(a−b)/2)| cos(w(a+b)) carries 2k as b varies


def test_even_p_marks_doubling_as_not_computed():
    value, notes = frequency_doubling(Clock(30, 7), 30, [7])
    assert value is None and "p odd" in notes[0]
    metrics = circuit(Clock(30, 7), 30, keys=[7])
    assert metrics.frequency_doubling is None and metrics.verdict == "clock"


def test_distance_irrelevance_and_symmetricity_are_seeded_and_bounded():
    model = Clock(P, K)
    assert gradient_symmetricity(model, P, seed=1) == gradient_symmetricity(model, P, seed=1)
    di, notes = distance_irrelevance(all_pair_logits(Pizza(P, K), P), P)
    assert 0 <= di < 1e-5 and not notes


def test_unsupported_model_is_refused_clearly():
    with pytest.raises(ConfigError, match="not supported by the analyses"):
        fourier_modes(nn.Linear(3, 3))


def test_sum_dependence_reads_one_for_a_clock_and_the_pizza_formulas_share():
    assert sum_dependence(all_pair_logits(Clock(P, K), P), P) == pytest.approx(1.0, abs=1e-9)
    # Pizza: E|cos(θ/2)|² / E cos²(θ/2) over the p differences, (2/π)² / ½ = 0.811 in the limit
    theta = 2 * math.pi * K * torch.arange(P, dtype=torch.float64) / P
    half = torch.cos(theta / 2).abs()
    assert sum_dependence(all_pair_logits(Pizza(P, K), P), P) == pytest.approx(float(half.mean() ** 2 / half.square().mean()), rel=1e-6)


class BlurredClock(Clock):
    """A Clock plus a logit term in a and c alone: it ignores a − b as a Clock does, but only part
    of its variance is a function of a + b − c."""

    def forward_from_embeddings(self, ea, eb, pre_unembed=False):
        clock = super().forward_from_embeddings(ea, eb, pre_unembed)
        return clock if pre_unembed else clock + ea @ self.embedding.weight.T


def test_a_logit_that_ignores_a_minus_b_is_not_called_a_clock_unless_it_is_a_function_of_the_sum():
    metrics = circuit(BlurredClock(P, K), P, keys=[K])
    assert metrics.distance_irrelevance > 0.7 and metrics.sum_dependence == pytest.approx(0.5, abs=0.01)
    assert metrics.verdict == "unclear" and any("not shown a Clock" in note for note in metrics.notes)


@pytest.mark.parametrize("tied", [False, True])
def test_the_mlp_symmetricity_is_fixed_by_its_architecture_and_not_used(tied):
    config = build_config("example", overrides={"linear_1_tied": tied, "p": P})
    model = build_model(config.model, P, seed=0)
    symmetricity = gradient_symmetricity(model, P)
    assert symmetricity == pytest.approx(1.0, abs=1e-6) if tied else abs(symmetricity) < 0.3  # before any training
    metrics = circuit(model, P, keys=[K])
    assert metrics.distance_irrelevance > 0.9  # a random network's logit ignores a − b too
    assert metrics.verdict == "unclear" and any("fixes its gradient symmetricity" in note for note in metrics.notes)


def test_the_verdict_in_words_says_since_when_or_why_none_was_called():
    from grokscope.analysis import verdict_summary

    assert verdict_summary({"final_verdict": "clock", "circuit_formed_at": 720, "checkpoints": []}) == "clock (stable from step 720)"
    unclear = {"final_verdict": "unclear", "circuit_formed_at": None, "checkpoints": [{"notes": ["first", "the reason"]}]}
    assert verdict_summary(unclear) == "unclear (the reason)"
    assert verdict_summary({"final_verdict": "unclear", "circuit_formed_at": None, "checkpoints": []}) == "unclear"
    flipping = {"final_verdict": "unclear", "circuit_formed_at": None, "verdict_stretch": 3,
                "checkpoints": [{"verdict": v, "notes": []} for v in ("clock", "pizza", "clock", "clock")]}
    assert verdict_summary(flipping) == "unclear (the last 3 checkpoints disagree: pizza, clock, clock)"


def test_a_runs_verdict_is_the_one_its_last_checkpoints_agree_on():
    from grokscope.analysis.analyze import CheckpointAnalysis, RunAnalysis

    def run(*verdicts):
        checkpoints = [CheckpointAnalysis(step, 1.0, {"circuit": {"verdict": v}}) for step, v in enumerate(verdicts)]
        return RunAnalysis(p=7, model_kind="mlp", key_frequencies=[], checkpoints=checkpoints)

    assert run("unclear", "pizza", "pizza", "pizza").final_verdict == "pizza"
    assert run("pizza", "pizza", "clock", "pizza").final_verdict == "unclear"  # one checkpoint on the other side
    assert run("pizza", "pizza", "clock", "pizza").circuit_formed_at is None
    assert run("clock", "clock").final_verdict == "clock"  # a run shorter than the stretch: all it has
