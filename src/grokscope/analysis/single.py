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
from . import plots
from .circuits import CircuitMetrics, circuit_metrics
from .fourier import (
    ProgressMeasures,
    ablation_losses,
    key_frequencies,
    mode_circle,
    mode_magnitudes,
    neuron_frequencies,
    progress_measures,
    sparsity,
)
from .hessian import top_hessian_eigenvalues


@dataclass
class FourierModes:
    embedding: list[float]
    unembedding: list[float]
    key_frequencies: list[int]
    sparsity: float
    neuron_frequencies: list[int] | None

    def plot(self):
        return plots.bars(self.embedding, f"embedding mode magnitudes (key {self.key_frequencies})", "frequency k",
                          "magnitude", highlight=self.key_frequencies)


@dataclass
class ModeCircles:
    p: int
    coordinates: dict[int, list[list[float]]]

    def plot(self):
        import numpy as np

        return plots.circles({k: np.array(v) for k, v in self.coordinates.items()}, self.p)


@dataclass
class ModeAblation:
    test_losses: list[float]  # index k: embedding kept to {constant, cos k, sin k}; k = 0: constant only

    def plot(self):
        return plots.bars(self.test_losses, "test loss keeping one embedding mode", "kept frequency k", "test loss", log=True)


@dataclass
class HessianSpectrum:
    eigenvalues: list[float]

    def plot(self):
        return plots.bars(self.eigenvalues, "top Hessian eigenvalues of the training loss", "rank", "eigenvalue")


def require_analysable(model: nn.Module) -> None:
    """The analyses read a token embedding table and re-run the model from embeddings."""
    if not (hasattr(model, "embedding") and hasattr(model, "forward_from_embeddings") and hasattr(model, "unembedding_matrix")):
        raise ConfigError(
            f"{type(model).__name__} is not supported by the analyses: they need a model with an `embedding` "
            "table, `forward_from_embeddings(ea, eb)` and `unembedding_matrix()` (grokscope's MLP and transformer)"
        )


@torch.no_grad()
def fourier_modes(model: nn.Module) -> FourierModes:
    require_analysable(model)
    embed = mode_magnitudes(model.embedding.weight)
    keys = key_frequencies(embed)
    return FourierModes(embed.tolist(), mode_magnitudes(model.unembedding_matrix()).tolist(), keys,
                        sparsity(embed, keys), neuron_frequencies(model))


@torch.no_grad()
def mode_circles(model: nn.Module, keys: list[int] | None = None) -> ModeCircles:
    require_analysable(model)
    embed = model.embedding.weight
    keys = keys or key_frequencies(mode_magnitudes(embed))
    return ModeCircles(embed.shape[0], {k: mode_circle(embed, k).tolist() for k in keys})


def mode_ablation(model: nn.Module, data: ModularDataset) -> ModeAblation:
    require_analysable(model)
    return ModeAblation(ablation_losses(model, data))


def progress(model: nn.Module, data: ModularDataset, keys: list[int] | None = None) -> ProgressMeasures:
    keys = keys or fourier_modes(model).key_frequencies
    return progress_measures(model, data, keys)


def hessian_spectrum(model: nn.Module, data: ModularDataset, count: int = 5) -> HessianSpectrum:
    require_analysable(model)
    return HessianSpectrum(top_hessian_eigenvalues(model, data.train_x, data.train_y, count=count))


def circuit(model: nn.Module, p: int, keys: list[int] | None = None) -> CircuitMetrics:
    keys = keys or fourier_modes(model).key_frequencies
    return circuit_metrics(model, p, keys)
