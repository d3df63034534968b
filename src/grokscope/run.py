"""A finished (or partial) run read back from disk: its config, metrics table and checkpoints."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from torch import nn

from .config import RunConfig, parse_config
from .errors import CheckpointError, ConfigError
from .layout import RunPaths
from .models import build_model
from .store import list_checkpoints, load_tensors, read_json, read_metrics
from .tasks import ModularDataset, make_dataset
from .thresholds import GENERALISED_TEST_ACCURACY


@dataclass
class Run:
    """A run directory. ``metrics`` holds one dict per evaluated step."""

    path: Path
    config: RunConfig
    metrics: list[dict[str, float]]

    @property
    def paths(self) -> RunPaths:
        return RunPaths(self.path)

    @property
    def steps(self) -> list[int]:
        """Steps that have a checkpoint."""
        return [step for step, _ in list_checkpoints(self.path)]

    def dataset(self) -> ModularDataset:
        return make_dataset(self.config.task, self.config.training.seed)

    def new_model(self) -> nn.Module:
        return build_model(self.config.model, self.config.task.p, self.config.training.seed)

    def state_dict(self, step: int) -> dict[str, torch.Tensor]:
        """The weights saved at ``step``, checked against the model's shapes."""
        paths = dict(list_checkpoints(self.path))
        if step not in paths:
            raise CheckpointError(f"{self.path} has no checkpoint at step {step}; it has {sorted(paths)}")
        return load_tensors(paths[step], self.parameter_shapes, self.path)

    @cached_property
    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape of each tensor of the model's state dict (a checkpoint must match them)."""
        return {k: tuple(v.shape) for k, v in self.new_model().state_dict().items()}

    def model(self, step: int) -> nn.Module:
        """A fresh model holding the weights saved at ``step``."""
        model = self.new_model()
        model.load_state_dict(self.state_dict(step))
        return model

    def models(self) -> list[nn.Module]:
        return [self.model(step) for step in self.steps]

    def metric(self, column: str) -> list[float]:
        return [row[column] for row in self.metrics]

    def grokking_step(self, threshold: float = GENERALISED_TEST_ACCURACY) -> int | None:
        """First evaluated step at which test accuracy reached ``threshold``."""
        return next((int(r["step"]) for r in self.metrics if r["test_acc"] >= threshold), None)

    def summary_line(self, seconds: float | None = None) -> str:
        if not self.metrics:
            return f"{self.path}: no metrics yet"
        last = self.metrics[-1]
        grok = self.grokking_step()
        text = (
            f"{self.path}: step {int(last['step'])}, train_acc {last['train_acc']:.4f}, "
            f"test_acc {last['test_acc']:.4f}, test_acc>={GENERALISED_TEST_ACCURACY} first at step "
            f"{grok if grok is not None else 'never'}"
        )
        return text + (f", {seconds:.1f} s" if seconds is not None else "")


def load_run(path: str | Path) -> Run:
    """Read a run directory written by :func:`grokscope.train` or ``grokscope import-legacy``."""
    run_dir = Path(path).resolve()
    paths = RunPaths(run_dir)
    if not paths.is_run():
        raise CheckpointError(f"{run_dir} is not a grokscope run (no {RunPaths.config})")
    try:
        config = parse_config(read_json(paths.config, run_dir))
    except ConfigError as err:
        raise ConfigError(f"{paths.config}: {err}") from None
    return Run(run_dir, config, read_metrics(run_dir))
