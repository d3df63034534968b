"""Every analysis at every checkpoint of a run: ``grokscope analyze RUN``.

Reads checkpoints, writes ``results/fourier.json``, ``results/circuit.json`` and figures; never
retrains. The key frequencies are those of the final checkpoint's embedding.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from tqdm import tqdm

from ..errors import ConfigError
from ..run import Run
from ..thresholds import GENERALISED_TEST_ACCURACY, VERDICT_STRETCH
from ..version import __version__
from .fourier import key_frequencies, mode_magnitudes
from .registry import ANALYSES, Checkpoint


@dataclass
class CheckpointAnalysis:
    """The fields every analysis of ANALYSES computed at one checkpoint, read as attributes
    (``c.hessian_top``, ``c.circuit``)."""

    step: int
    test_acc: float | None
    fields: dict = field(default_factory=dict)

    def __getattr__(self, name: str):
        fields = self.__dict__.get("fields", {})
        if name in fields:
            return fields[name]
        raise AttributeError(f"no analysis field {name!r} (the analyses give: {', '.join(fields)})")


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
        """The verdict the last VERDICT_STRETCH checkpoints agree on, else "unclear"."""
        last = self.verdicts[-VERDICT_STRETCH:]
        return last[-1] if len(set(last)) == 1 else "unclear"

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
        """results/fourier.json: every analysis's fields but the circuit's (circuit.json has those)."""
        return {
            "settings": self.settings,
            "p": self.p,
            "key_frequencies": self.key_frequencies,
            "checkpoints": [{"step": c.step, **{k: v for k, v in c.fields.items() if k != "circuit"}} for c in self.checkpoints],
        }

    def circuit_json(self) -> dict:
        return {
            "settings": self.settings,
            "key_frequencies": self.key_frequencies,
            "final_verdict": self.final_verdict,
            "verdict_stretch": VERDICT_STRETCH,
            "circuit_formed_at": self.circuit_formed_at,
            "checkpoints": [{"step": c.step, "test_acc": c.test_acc, **c.circuit} for c in self.checkpoints],
        }


def verdict_summary(circuit: dict) -> str:
    """A stored circuit.json's final verdict in words: since when it holds, or why none was called."""
    if circuit["final_verdict"] != "unclear":
        return f"{circuit['final_verdict']} (stable from step {circuit['circuit_formed_at']})"
    checkpoints = circuit.get("checkpoints") or [{}]
    stretch = [c.get("verdict") for c in checkpoints[-circuit.get("verdict_stretch", 1):]]
    if len(set(stretch)) > 1:
        return f"unclear (the last {len(stretch)} checkpoints disagree: {', '.join(stretch)})"
    notes = checkpoints[-1].get("notes") or []
    return "unclear" + (f" ({notes[-1]})" if notes else "")


def analyze_run(
    run: Run, progress: bool = True, hessian_count: int = 5, seed: int = 0, last: int | None = None
) -> RunAnalysis:
    """Fourier anatomy, progress measures, Hessian spectrum and Pizza/Clock metrics per checkpoint
    (only the ``last`` checkpoints when given: 1 for a sweep's summary, VERDICT_STRETCH for a verdict)."""
    steps = run.steps
    if not steps:
        raise ConfigError(f"{run.path} has no checkpoints to analyse; train it first")
    if last is not None:
        steps = steps[-last:]
    data = run.dataset()
    final = run.model(steps[-1])
    keys = key_frequencies(mode_magnitudes(final.embedding.weight.detach()))
    accuracy = {int(r["step"]): r["test_acc"] for r in run.metrics}
    results = []
    for step in tqdm(steps, desc="analyze", unit="ckpt", disable=not progress, file=sys.stderr):
        checkpoint = Checkpoint(run.model(step), data, data.p, keys, accuracy.get(step), seed, hessian_count)
        fields = {name: value for analysis in ANALYSES.values() for name, value in analysis.compute(checkpoint).items()}
        results.append(CheckpointAnalysis(step, checkpoint.test_acc, fields))
    settings = {"package_version": __version__, "seed": seed, "hessian_count": hessian_count,
                "generalised_accuracy": GENERALISED_TEST_ACCURACY, "analyses": list(ANALYSES), "run": str(run.path)}
    return RunAnalysis(data.p, run.config.model.kind, keys, results, settings)
