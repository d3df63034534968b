"""Every analysis at every checkpoint of a run: ``grokscope analyze RUN``.

Reads checkpoints, writes ``results/fourier.json``, ``results/circuit.json`` and figures; never
retrains. The key frequencies are those of the final checkpoint's embedding.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field

import torch
from tqdm import tqdm

from .. import __version__
from ..errors import ConfigError
from ..run import Run
from .circuits import circuit_metrics
from .fourier import ablation_losses, key_frequencies, mode_magnitudes, neuron_frequencies, progress_measures, sparsity
from .hessian import top_hessian_eigenvalues

GENERALISED_ACCURACY = 0.9  # below this test accuracy no circuit has formed: the verdict is "unclear"


@dataclass
class CheckpointAnalysis:
    step: int
    test_acc: float | None
    embedding_magnitudes: list[float]
    unembedding_magnitudes: list[float]
    neuron_frequencies: list[int] | None
    sparsity: float
    ablation_losses: list[float]
    restricted_loss: float
    excluded_loss: float
    hessian_top: list[float]
    circuit: dict


@dataclass
class RunAnalysis:
    p: int
    model_kind: str
    key_frequencies: list[int]
    checkpoints: list[CheckpointAnalysis]
    settings: dict = field(default_factory=dict)

    @property
    def steps(self) -> list[int]:
        return [c.step for c in self.checkpoints]

    @property
    def verdicts(self) -> list[str]:
        return [c.circuit["verdict"] for c in self.checkpoints]

    @property
    def final_verdict(self) -> str:
        return self.verdicts[-1]

    @property
    def circuit_formed_at(self) -> int | None:
        """First step from which the verdict stays the same (and is not 'unclear') to the end."""
        final = self.final_verdict
        if final == "unclear":
            return None
        formed = None
        for c in self.checkpoints:
            formed = (formed if formed is not None else c.step) if c.circuit["verdict"] == final else None
        return formed

    def fourier_json(self) -> dict:
        keep = ("step", "embedding_magnitudes", "unembedding_magnitudes", "neuron_frequencies", "sparsity",
                "ablation_losses", "restricted_loss", "excluded_loss", "hessian_top")
        return {
            "settings": self.settings,
            "p": self.p,
            "key_frequencies": self.key_frequencies,
            "checkpoints": [{k: v for k, v in asdict(c).items() if k in keep} for c in self.checkpoints],
        }

    def circuit_json(self) -> dict:
        return {
            "settings": self.settings,
            "key_frequencies": self.key_frequencies,
            "final_verdict": self.final_verdict,
            "circuit_formed_at": self.circuit_formed_at,
            "checkpoints": [{"step": c.step, "test_acc": c.test_acc, **c.circuit} for c in self.checkpoints],
        }


def analyze_run(
    run: Run, progress: bool = True, hessian_count: int = 5, seed: int = 0, final_only: bool = False
) -> RunAnalysis:
    """Fourier anatomy, progress measures, Hessian spectrum and Pizza/Clock metrics per checkpoint
    (only the final checkpoint with ``final_only``, as a sweep's summary does)."""
    steps = run.steps
    if not steps:
        raise ConfigError(f"{run.path} has no checkpoints to analyse; train it first")
    if final_only:
        steps = steps[-1:]
    data = run.dataset()
    p = data.p
    final = run.model(steps[-1])
    keys = key_frequencies(mode_magnitudes(final.embedding.weight.detach()))
    accuracy = {int(r["step"]): r["test_acc"] for r in run.metrics}
    results = []
    for step in tqdm(steps, desc="analyze", unit="ckpt", disable=not progress, file=sys.stderr):
        model = run.model(step)
        with torch.no_grad():
            embed_mags = mode_magnitudes(model.embedding.weight)
            unembed_mags = mode_magnitudes(model.unembedding_matrix())
        measures = progress_measures(model, data, keys)
        metrics = circuit_metrics(model, p, keys, seed=seed)
        acc = accuracy.get(step)
        circuit = metrics.to_dict()
        if acc is not None and acc < GENERALISED_ACCURACY and circuit["verdict"] != "unclear":
            circuit["notes"] = circuit["notes"] + [f"test accuracy {acc:.2f} < {GENERALISED_ACCURACY}: no circuit yet"]
            circuit["verdict"] = "unclear"
        results.append(
            CheckpointAnalysis(
                step=step,
                test_acc=acc,
                embedding_magnitudes=embed_mags.tolist(),
                unembedding_magnitudes=unembed_mags.tolist(),
                neuron_frequencies=neuron_frequencies(model),
                sparsity=sparsity(embed_mags, keys),
                ablation_losses=ablation_losses(model, data),
                restricted_loss=measures.restricted_loss,
                excluded_loss=measures.excluded_loss,
                hessian_top=top_hessian_eigenvalues(model, data.train_x, data.train_y, count=hessian_count, seed=seed),
                circuit=circuit,
            )
        )
    settings = {"package_version": __version__, "seed": seed, "hessian_count": hessian_count,
                "generalised_accuracy": GENERALISED_ACCURACY, "run": str(run.path)}
    return RunAnalysis(p, run.config.model.kind, keys, results, settings)
