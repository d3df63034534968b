"""Analyses of one model, for notebooks: each returns a result object with ``.plot()``.

    from grokscope.analysis import fourier_modes, mode_circles, mode_ablation, progress, hessian_spectrum, circuit
    modes = fourier_modes(model); modes.key_frequencies; modes.plot()
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from ..tasks import ModularDataset
from ..training import evaluate
from . import charts
from .circuits import CircuitMetrics
from .fourier import ProgressMeasures, key_frequencies, mode_circle, mode_magnitudes
from .registry import ANALYSES, Checkpoint


@dataclass
class FourierModes:
    embedding: list[float]
    unembedding: list[float]
    key_frequencies: list[int]
    sparsity: float
    neuron_frequencies: list[int] | None

    def plot(self):
        return charts.bars(self.embedding, f"embedding mode magnitudes (key {self.key_frequencies})", "frequency k",
                          "magnitude", highlight=self.key_frequencies)


@dataclass
class ModeCircles:
    p: int
    coordinates: dict[int, list[list[float]]]

    def plot(self):
        import numpy as np

        return charts.circles({k: np.array(v) for k, v in self.coordinates.items()}, self.p)


@dataclass
class ModeAblation:
    test_losses: list[float]  # index k: embedding kept to {constant, cos k, sin k}; k = 0: constant only

    def plot(self):
        return charts.bars(self.test_losses, "test loss keeping one embedding mode", "kept frequency k", "test loss", log=True)


@dataclass
class HessianSpectrum:
    eigenvalues: list[float]

    def plot(self):
        return charts.bars(self.eigenvalues, "top Hessian eigenvalues of the training loss", "rank", "eigenvalue")


def require_analysable(model: nn.Module) -> None:
    """The analyses read a token embedding table and re-run the model from embeddings."""
    if not (hasattr(model, "embedding") and hasattr(model, "forward_from_embeddings") and hasattr(model, "unembedding_matrix")):
        raise ConfigError(
            f"{type(model).__name__} is not supported by the analyses: they need a model with an `embedding` "
            "table, `forward_from_embeddings(ea, eb)` and `unembedding_matrix()` (grokscope's MLP and transformer)"
        )


def _checkpoint(model: nn.Module, data: ModularDataset | None, keys: list[int] | None = None,
                test_acc: float | None = None, count: int = 5) -> Checkpoint:
    require_analysable(model)
    p = model.embedding.weight.shape[0]
    if keys is None:
        with torch.no_grad():
            keys = key_frequencies(mode_magnitudes(model.embedding.weight))
    return Checkpoint(model, data, p, keys, test_acc, hessian_count=count)


def fourier_modes(model: nn.Module) -> FourierModes:
    c = _checkpoint(model, None)
    fields = ANALYSES["fourier"].compute(c)
    return FourierModes(fields["embedding_magnitudes"], fields["unembedding_magnitudes"], c.keys, fields["sparsity"],
                        fields["neuron_frequencies"])


@torch.no_grad()
def mode_circles(model: nn.Module, keys: list[int] | None = None) -> ModeCircles:
    c = _checkpoint(model, None, keys)
    return ModeCircles(c.p, {k: mode_circle(model.embedding.weight, k).tolist() for k in c.keys})


def mode_ablation(model: nn.Module, data: ModularDataset) -> ModeAblation:
    return ModeAblation(ANALYSES["ablation"].compute(_checkpoint(model, data))["ablation_losses"])


def progress(model: nn.Module, data: ModularDataset, keys: list[int] | None = None) -> ProgressMeasures:
    return ProgressMeasures(**ANALYSES["progress"].compute(_checkpoint(model, data, keys)))


def hessian_spectrum(model: nn.Module, data: ModularDataset, count: int = 5) -> HessianSpectrum:
    return HessianSpectrum(ANALYSES["hessian"].compute(_checkpoint(model, data, count=count))["hessian_top"])


def circuit(model: nn.Module, data: ModularDataset | int, keys: list[int] | None = None) -> CircuitMetrics:
    """The circuit metrics and verdict exactly as ``grokscope analyze`` gives them: with the run's
    dataset the verdict is gated on its test accuracy; with only p, on the accuracy over all p²
    pairs (noted), since a network that has not generalised has no circuit yet."""
    if isinstance(data, ModularDataset):
        test_acc = evaluate(model, data.test_x, data.test_y)[1]
        note = None
    else:
        pairs = torch.cartesian_prod(torch.arange(data), torch.arange(data))
        test_acc = evaluate(model, pairs, pairs.sum(-1) % data)[1]
        note = f"gated on the accuracy over all {data}² pairs ({test_acc:.3f}); pass the run's dataset to gate on its test pairs"
    result = ANALYSES["circuit"].compute(_checkpoint(model, None, keys, test_acc))["circuit"]
    if note:
        result["notes"] = result["notes"] + [note]
    return CircuitMetrics(**result)
