"""Pizza or Clock? Three measurements and a verdict (REFERENCE §5).

- Gradient symmetricity and distance irrelevance: Zhong et al. 2023 (arXiv 2306.17844, §4.2).
  Pizza: symmetricity ≥ 0.98 and small distance irrelevance (their Model A: 0.994 and 0.17);
  Clock: distance irrelevance near 1.
- Sum dependence: the fraction of the (per-pair centred) logits' variance that is a function of
  (a + b − c) mod p: 1 for a Clock's Q = cos(w(a + b − c)), 0.81 for a Pizza's ideal logits, ~0
  at initialisation. Positive evidence for a Clock, where distance irrelevance alone only says
  "not a Pizza" (it is ~1 at initialisation).
- Frequency doubling: the original study's criterion. For an embedding mode k, a Pizza shows a
  mode at 2k mod p in the activations the unembedding reads; a Clock only at k. It needs p odd
  (then k -> 2k is a bijection on the frequencies); for even p it is reported as null, with why.

The verdict uses the published metrics and the sum dependence; the doubling ratio is reported
beside them. A model whose architecture fixes its gradient symmetricity (the original study's MLP:
exactly 1 with tied input maps, near 0 with untied ones, whatever it learnt) sets
``symmetricity_is_evidence = False``; its verdict rests on the other two (docs/circuits.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..seeding import generator
from ..thresholds import (
    CLOCK_MIN_DISTANCE_IRRELEVANCE,
    CLOCK_MIN_SUM_DEPENDENCE,
    PIZZA_MAX_DISTANCE_IRRELEVANCE,
    PIZZA_SYMMETRICITY,
)
from .fourier import fourier_basis


@dataclass
class CircuitMetrics:
    gradient_symmetricity: float
    distance_irrelevance: float
    sum_dependence: float
    frequency_doubling: float | None
    verdict: str
    notes: list[str]

    def to_dict(self) -> dict:
        return asdict(self)

    def plot(self):
        from .charts import bars

        values = [self.gradient_symmetricity, self.distance_irrelevance, self.sum_dependence, self.frequency_doubling or 0.0]
        fig = bars(values, f"verdict: {self.verdict}", "", "value")
        fig.axes[0].set_xticks(range(4), ["gradient\nsymmetricity", "distance\nirrelevance", "sum\ndependence", "frequency\ndoubling"])
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
def all_pair_logits(model: nn.Module, p: int) -> torch.Tensor:
    """The model's logits [p*p, p] on every pair (a, b), row a*p + b: what distance irrelevance and
    sum dependence both read."""
    return model(_all_pairs(p))


def distance_irrelevance(logits: torch.Tensor, p: int) -> tuple[float, list[str]]:
    """Mean over d of the std of the correct-class logit over {a − b ≡ d}, over its std on all
    pairs (``logits``: :func:`all_pair_logits`). A logit that does not vary at all does not depend
    on the distance: 1, with a note."""
    pairs = _all_pairs(p)
    correct = logits[torch.arange(p * p), (pairs[:, 0] + pairs[:, 1]) % p].double()
    overall = correct.std(correction=0)  # population std, as Zhong et al.: a perfect Clock reads exactly 1
    if overall <= 1e-5 * correct.abs().mean().clamp_min(1e-30):  # float32 noise on a constant
        return 1.0, ["the correct logit is the same for every pair; distance irrelevance set to 1"]
    distance = (pairs[:, 0] - pairs[:, 1]) % p
    within = torch.stack([correct[distance == d].std(correction=0) for d in range(p)])
    return float(within.mean() / overall), []


def sum_dependence(logits: torch.Tensor, p: int) -> float:
    """R² of the logits Q_abc (:func:`all_pair_logits`, centred over c for each pair: softmax
    ignores a shift) fitted by the best function of (a + b − c) mod p, i.e. its mean over each such class."""
    pairs = _all_pairs(p)
    logits = logits.double()
    logits = logits - logits.mean(1, keepdim=True)
    total = logits.square().sum()
    if total <= 0:
        return 0.0
    sums = (pairs[:, :1] + pairs[:, 1:] - torch.arange(p)).remainder(p).flatten()  # [p*p*p], row-major as logits
    means = torch.zeros(p, dtype=torch.float64).index_add_(0, sums, logits.flatten()) / (p * p)
    return float(1 - (logits.flatten() - means[sums]).square().sum() / total)


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


def verdict(symmetricity: float, irrelevance: float, sums: float, symmetricity_is_evidence: bool = True) -> tuple[str, list[str]]:
    """pizza: symmetric gradients (where that is evidence) and a logit organised by a − b; clock: a
    logit that ignores a − b, is a function of a + b − c, and gradients that are not symmetric."""
    notes = [] if symmetricity_is_evidence else [
        "this architecture fixes its gradient symmetricity, so it is not evidence: the verdict rests on "
        "distance irrelevance and sum dependence"]
    symmetric = symmetricity >= PIZZA_SYMMETRICITY if symmetricity_is_evidence else None
    if symmetric in (True, None) and irrelevance <= PIZZA_MAX_DISTANCE_IRRELEVANCE:
        return "pizza", notes
    if irrelevance >= CLOCK_MIN_DISTANCE_IRRELEVANCE and symmetric in (False, None):
        if sums >= CLOCK_MIN_SUM_DEPENDENCE:
            return "clock", notes
        notes.append(f"the logit ignores a − b but is only {sums:.0%} a function of a + b − c "
                     f"(a Clock's is ~100%, at least {CLOCK_MIN_SUM_DEPENDENCE:.0%} called): not a Pizza, not shown a Clock")
    return "unclear", notes


def circuit_metrics(model: nn.Module, p: int, keys: list[int], seed: int = 0) -> CircuitMetrics:
    """All four numbers and the verdict for one model."""
    symmetricity = gradient_symmetricity(model, p, seed=seed)
    logits = all_pair_logits(model, p)
    irrelevance, notes = distance_irrelevance(logits, p)
    sums = sum_dependence(logits, p)
    doubling, more = frequency_doubling(model, p, keys)
    called, why = verdict(symmetricity, irrelevance, sums, getattr(model, "symmetricity_is_evidence", True))
    return CircuitMetrics(symmetricity, irrelevance, sums, doubling, called, notes + more + why)
