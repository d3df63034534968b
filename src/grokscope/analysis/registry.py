"""The analyses, listed once. ``grokscope analyze`` runs every entry at every checkpoint and stores
its fields, the notebook functions (:mod:`grokscope.analysis.single`) are the same entries applied
to one model, and the report shows each entry's figures in its section. Adding an analysis is one
module (its ``compute`` and the functions that draw its figures) plus one line in ANALYSES
(docs/ARCHITECTURE.md shows one)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import torch
from torch import nn

from ..tasks import ModularDataset
from ..thresholds import GENERALISED_TEST_ACCURACY
from .circuits import circuit_metrics
from .fourier import (
    ablation_losses,
    mode_magnitudes,
    neuron_frequencies,
    progress_measures,
    sparsity,
)
from .hessian import top_hessian_eigenvalues


@dataclass
class Checkpoint:
    """What an analysis of one model reads: the model, its data (train/test split), the run's key
    frequencies and the model's test accuracy (None when unknown)."""

    model: nn.Module
    data: ModularDataset | None
    p: int
    keys: list[int]
    test_acc: float | None
    seed: int = 0
    hessian_count: int = 5

    @cached_property
    def finite(self) -> bool:
        """False when the weights hold NaN or inf (a diverged training): the numbers are then NaN."""
        return all(bool(torch.isfinite(p).all()) for p in self.model.parameters())


@dataclass(frozen=True)
class Figure:
    stem: str  # figures/<stem>.png
    caption: str
    draw: str  # "module:function" of (run, RunAnalysis) -> matplotlib Figure, imported when drawn


@dataclass(frozen=True)
class Analysis:
    name: str
    section: str  # the report section showing it (a new name gets a section of its own)
    compute: Callable[[Checkpoint], dict]  # -> this analysis's fields of one checkpoint
    figures: tuple[Figure, ...]
    section_title: str = ""  # the title of a section of its own


def _figures(*entries: tuple[str, str]) -> tuple[Figure, ...]:
    """The built-in figures: (stem, caption), each drawn by the function of that name in analysis/figures.py."""
    return tuple(Figure(stem, caption, f"grokscope.analysis.figures:{stem}") for stem, caption in entries)


@torch.no_grad()
def fourier(c: Checkpoint) -> dict:
    embed = mode_magnitudes(c.model.embedding.weight)
    return {"embedding_magnitudes": embed.tolist(), "unembedding_magnitudes": mode_magnitudes(c.model.unembedding_matrix()).tolist(),
            "neuron_frequencies": neuron_frequencies(c.model), "sparsity": sparsity(embed, c.keys)}


def ablation(c: Checkpoint) -> dict:
    return {"ablation_losses": ablation_losses(c.model, c.data)}


def progress(c: Checkpoint) -> dict:
    measures = progress_measures(c.model, c.data, c.keys)
    return {"restricted_loss": measures.restricted_loss, "excluded_loss": measures.excluded_loss}


def hessian(c: Checkpoint) -> dict:
    if not c.finite:  # Lanczos cannot run on NaN
        return {"hessian_top": [float("nan")] * c.hessian_count}
    return {"hessian_top": top_hessian_eigenvalues(c.model, c.data.train_x, c.data.train_y, count=c.hessian_count, seed=c.seed)}


def circuit(c: Checkpoint) -> dict:
    """Zhong et al.'s metrics and our verdict; below GENERALISED_TEST_ACCURACY no circuit is called."""
    result = circuit_metrics(c.model, c.p, c.keys, seed=c.seed).to_dict()
    if not c.finite:
        return {"circuit": {**result, "verdict": "unclear", "notes": result["notes"] + ["non-finite weights: no circuit"]}}
    if c.test_acc is not None and c.test_acc < GENERALISED_TEST_ACCURACY and result["verdict"] != "unclear":
        result["notes"] = result["notes"] + [f"test accuracy {c.test_acc:.2f} < {GENERALISED_TEST_ACCURACY}: no circuit yet"]
        result["verdict"] = "unclear"
    return {"circuit": result}


ANALYSES: dict[str, Analysis] = {
    a.name: a
    for a in [
        Analysis("fourier", "fourier", fourier, _figures(
            ("fourier_magnitudes", "Embedding Fourier mode magnitudes over training"),
            ("fourier_lines", "Embedding mode magnitudes per frequency (the original study's plot)"),
            ("fourier_magnitudes_unembed", "Unembedding Fourier mode magnitudes over training"),
            ("fourier_sparsity", "Share of the embedding's norm in the key frequencies"),
            ("circles", "Mode circles of the key frequencies at a few checkpoints"))),
        Analysis("ablation", "fourier", ablation, _figures(
            ("ablation", "Keep-one-mode ablation: test loss with the embedding projected onto one frequency"))),
        Analysis("progress", "fourier", progress, _figures(
            ("progress_measures", "Progress measures: restricted and excluded loss (Nanda et al. 2023)"))),
        Analysis("hessian", "hessian", hessian, _figures(
            ("hessian", "Top eigenvalues of the training-loss Hessian at each checkpoint"))),
        Analysis("circuit", "circuit", circuit, _figures(("circuit_metrics", "Circuit metrics over training"))),
    ]
}


def figures_of(section: str) -> list[tuple[str, str]]:
    """(stem, caption) of every figure the analyses of a report section draw."""
    return [(figure.stem, figure.caption) for a in ANALYSES.values() if a.section == section for figure in a.figures]


def own_sections(built_in: set[str]) -> dict[str, str]:
    """Report sections the analyses ask for beyond ``built_in``: id -> title."""
    return {a.section: a.section_title or a.name for a in ANALYSES.values() if a.section not in built_in}
