"""Fourier anatomy of modular addition (REFERENCE §4; Nanda et al. 2023, arXiv 2301.05217).

The basis over Z_p and a mode's magnitude are tasks/fourier_basis.py's (the refined LLCs use them
too); here, what is measured with them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..tasks import ModularDataset
from ..tasks.fourier_basis import fourier_basis, mode_magnitudes  # noqa: F401  (re-exported: analysis users import them here)

KEY_FACTOR = 3.0  # a key mode stands this many times above the noise floor


def key_frequencies(magnitudes: torch.Tensor) -> list[int]:
    """Frequencies k ≥ 1 whose magnitude is at least KEY_FACTOR times the median over k ≥ 1.

    Most modes of a trained embedding carry nothing, so the median is a robust noise floor; the
    few the network uses stand far above it (on the `example` preset: 3.4x to 12x, the next 2.8x)."""
    values = magnitudes[1:]
    floor = values.median()
    keys = [int(k) + 1 for k in torch.nonzero(values >= KEY_FACTOR * floor).flatten()]
    return keys or [int(values.argmax()) + 1]


def sparsity(magnitudes: torch.Tensor, keys: list[int]) -> float:
    """Share of the squared norm carried by the key frequencies."""
    power = magnitudes.square()
    return float(power[keys].sum() / power.sum())


def mode_circle(matrix: torch.Tensor, k: int) -> torch.Tensor:
    """Token j's coordinates [p, 2] in the plane of frequency k: the embedding rows projected onto
    the directions C_k and S_k (made orthonormal). A clean circle ordered by j·k mod p means the
    matrix carries frequency k."""
    cos, sin = fourier_basis(matrix.shape[0])
    u = cos[k] @ matrix
    v = sin[k] @ matrix
    u = u / u.norm().clamp_min(1e-12)
    v = v - (v @ u) * u
    v = v / v.norm().clamp_min(1e-12)
    return matrix @ torch.stack([u, v], dim=1)


def keep_one_mode(matrix: torch.Tensor, k: int) -> torch.Tensor:
    """The matrix projected onto span{constant, cos_k, sin_k}: the inverse real DFT of the
    coefficients with every other frequency masked out."""
    cos, sin = fourier_basis(matrix.shape[0])
    basis = cos[:1] if k == 0 else torch.stack([cos[0], cos[k], sin[k]])
    return basis.T @ (basis @ matrix)


def neuron_frequencies(model: nn.Module) -> list[int] | None:
    """For the MLP: the frequency (k ≥ 1) each hidden neuron is tuned to, read off the Fourier
    magnitudes of its input from the first operand, (L E)[:, n]. None for other models."""
    if not hasattr(model, "linear1r"):
        return None
    left = model.linear1r if model.cfg.linear_1_tied else model.linear1l
    inputs = model.embedding.weight @ left.weight.T  # [p, h]
    cos, sin = fourier_basis(inputs.shape[0])
    power = (cos @ inputs).square() + (sin @ inputs).square()  # [k, h]
    return [int(k) + 1 for k in power[1:].argmax(0)]


@torch.no_grad()
def ablation_losses(model: nn.Module, data: ModularDataset) -> list[float]:
    """Test loss with the embedding kept to one mode, for every k = 0..p//2 (k = 0: constant only)."""
    params = dict(model.named_parameters())
    embed = params["embedding.weight"]
    losses = []
    for k in range(embed.shape[0] // 2 + 1):
        projected = keep_one_mode(embed, k)
        logits = torch.func.functional_call(model, {**params, "embedding.weight": projected}, (data.test_x,))
        losses.append(float(nn.functional.cross_entropy(logits, data.test_y)))
    return losses


@dataclass
class ProgressMeasures:
    """Nanda et al.'s progress measures at one checkpoint."""

    restricted_loss: float  # logits kept to the key-frequency components (and the mean), all pairs
    excluded_loss: float  # logits without the key-frequency components, training pairs

    def plot(self):
        from .charts import bars

        fig = bars([self.restricted_loss, self.excluded_loss], "progress measures", "", "loss", log=True)
        fig.axes[0].set_xticks(range(2), ["restricted (all pairs)", "excluded (train pairs)"])
        return fig


@torch.no_grad()
def progress_measures(model: nn.Module, data: ModularDataset, keys: list[int]) -> ProgressMeasures:
    """Project the logits, as functions of (a, b) for each class c, onto cos/sin(2πk(a+b)/p) for
    the key frequencies (Nanda et al. 2023, §5.1)."""
    p = data.p
    grid = torch.cartesian_prod(torch.arange(p), torch.arange(p))  # row a*p + b
    logits = model(grid)  # [p², p]
    total = (grid[:, 0] + grid[:, 1]).double()
    directions = []
    for k in keys:
        angle = 2 * math.pi * k * total / p
        directions += [torch.cos(angle), torch.sin(angle)]
    basis = torch.stack(directions, dim=1)
    norms = basis.norm(dim=0)
    # sin(2π·(p/2)·(a+b)/p) = sin(π(a+b)) vanishes for even p: its rounding noise is not a direction
    basis = basis[:, norms > 1e-6 * p] / norms[norms > 1e-6 * p]  # orthonormal over the full grid
    centred = logits.double() - logits.double().mean(0)
    key_part = basis @ (basis.T @ centred)
    restricted = logits.double().mean(0) + key_part
    excluded = logits.double() - key_part
    labels = (grid[:, 0] + grid[:, 1]) % p
    row = {(a, b): i for i, (a, b) in enumerate(grid.tolist())}
    train_rows = torch.tensor([row[(a, b)] for a, b in data.train_x.tolist()])
    return ProgressMeasures(
        restricted_loss=float(nn.functional.cross_entropy(restricted, labels)),
        excluded_loss=float(nn.functional.cross_entropy(excluded[train_rows], data.train_y)),
    )
