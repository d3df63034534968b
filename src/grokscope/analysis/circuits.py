"""Pizza or Clock? Three measurements and a verdict (REFERENCE §5).

- Gradient symmetricity and distance irrelevance: Zhong et al. 2023 (arXiv 2306.17844, §4.2).
  Pizza: symmetricity ≥ 0.98 and small distance irrelevance (their Model A: 0.994 and 0.17);
  Clock: distance irrelevance near 1.
- Frequency doubling: the original study's criterion. For an embedding mode k, a Pizza shows a
  mode at 2k mod p in the activations the unembedding reads; a Clock only at k. It needs p odd
  (then k -> 2k is a bijection on the frequencies); for even p it is reported as null, with why.

The verdict uses the two published metrics; the doubling ratio is reported beside them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..seeding import generator
from ..thresholds import (
    CLOCK_MIN_DISTANCE_IRRELEVANCE,
    PIZZA_MAX_DISTANCE_IRRELEVANCE,
    PIZZA_SYMMETRICITY,
)
from .fourier import fourier_basis


@dataclass
class CircuitMetrics:
    gradient_symmetricity: float
    distance_irrelevance: float
    frequency_doubling: float | None
    verdict: str
    notes: list[str]

    def to_dict(self) -> dict:
        return asdict(self)

    def plot(self):
        from .charts import bars

        values = [self.gradient_symmetricity, self.distance_irrelevance, self.frequency_doubling or 0.0]
        fig = bars(values, f"verdict: {self.verdict}", "", "value")
        fig.axes[0].set_xticks(range(3), ["gradient symmetricity", "distance irrelevance", "frequency doubling"])
        return fig


def _all_pairs(p: int) -> torch.Tensor:
    return torch.cartesian_prod(torch.arange(p), torch.arange(p))  # row a*p + b


def gradient_symmetricity(model: nn.Module, p: int, n_triples: int = 100, seed: int = 0) -> float:
    """Mean cosine between ∂Q_abc/∂E_a and ∂Q_abc/∂E_b over random triples (a, b, c)."""
    g = generator(seed, "symmetricity")
    a, b, c = (torch.randint(p, (n_triples,), generator=g) for _ in range(3))
    embed = model.embedding.weight.detach()
    ea, eb = embed[a].clone().requires_grad_(True), embed[b].clone().requires_grad_(True)
    logits = model.forward_from_embeddings(ea, eb)
    grad_a, grad_b = torch.autograd.grad(logits[torch.arange(n_triples), c].sum(), [ea, eb])
    return float(nn.functional.cosine_similarity(grad_a, grad_b, dim=-1).mean())


@torch.no_grad()
def distance_irrelevance(model: nn.Module, p: int) -> tuple[float, list[str]]:
    """Mean over d of the std of the correct-class logit over {a − b ≡ d}, over its std on all
    pairs. A logit that does not vary at all does not depend on the distance: 1, with a note."""
    pairs = _all_pairs(p)
    correct = model(pairs)[torch.arange(p * p), (pairs[:, 0] + pairs[:, 1]) % p].double()
    overall = correct.std(correction=0)  # population std, as Zhong et al.: a perfect Clock reads exactly 1
    if overall <= 1e-5 * correct.abs().mean().clamp_min(1e-30):  # float32 noise on a constant
        return 1.0, ["the correct logit is the same for every pair; distance irrelevance set to 1"]
    distance = (pairs[:, 0] - pairs[:, 1]) % p
    within = torch.stack([correct[distance == d].std(correction=0) for d in range(p)])
    return float(within.mean() / overall), []


@torch.no_grad()
def frequency_doubling(model: nn.Module, p: int, keys: list[int]) -> tuple[float | None, list[str]]:
    """Σ_k s(2k mod p) / Σ_k s(k) for the key frequencies k, where s is the magnitude spectrum
    over b (a fixed, then averaged over a) of the activations the unembedding reads."""
    if p % 2 == 0:
        return None, [f"frequency doubling needs p odd (2k mod p is not a bijection for p={p}); not computed"]
    pairs = _all_pairs(p)
    embed = model.embedding.weight
    acts = model.forward_from_embeddings(embed[pairs[:, 0]], embed[pairs[:, 1]], pre_unembed=True)
    acts = acts.view(p, p, -1)  # [a, b, feature]
    cos, sin = fourier_basis(p)
    power = torch.einsum("kb,abf->akf", cos, acts).square() + torch.einsum("kb,abf->akf", sin, acts).square()
    spectrum = power.sum(-1).sqrt().mean(0)  # [k]

    def fold(f: int) -> int:
        f %= p
        return min(f, p - f)

    doubled = sum(float(spectrum[fold(2 * k)]) for k in keys)
    base = sum(float(spectrum[k]) for k in keys)
    return doubled / max(base, 1e-12), []


def verdict(symmetricity: float, irrelevance: float) -> str:
    if symmetricity >= PIZZA_SYMMETRICITY and irrelevance <= PIZZA_MAX_DISTANCE_IRRELEVANCE:
        return "pizza"
    if irrelevance >= CLOCK_MIN_DISTANCE_IRRELEVANCE and symmetricity < PIZZA_SYMMETRICITY:
        return "clock"
    return "unclear"


def circuit_metrics(model: nn.Module, p: int, keys: list[int], seed: int = 0) -> CircuitMetrics:
    """All three numbers and the verdict for one model."""
    symmetricity = gradient_symmetricity(model, p, seed=seed)
    irrelevance, notes = distance_irrelevance(model, p)
    doubling, more = frequency_doubling(model, p, keys)
    return CircuitMetrics(symmetricity, irrelevance, doubling, verdict(symmetricity, irrelevance), notes + more)
