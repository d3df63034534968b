"""Where things live on disk: the one owner of run- and sweep-directory file names.

Every reader and writer asks these objects for a path, so a file's name is written once::

    RUN/config.json  manifest.json  metrics.csv  report.html  .lock
        checkpoints/step_000060.safetensors  state/resume.safetensors
        results/llc.json  llc_samples.safetensors  calibration.json  fourier.json  circuit.json  sweep_point.json
        figures/<stem>.png
    SWEEP/sweep.json  results.csv  fits.json  report.html  figures/<stem>.png  runs/<point>/ (run directories)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

CHECKPOINT_PATTERN = re.compile(r"^step_(\d+)\.safetensors$")


@dataclass(frozen=True)
class RunPaths:
    root: Path

    CONFIG = "config.json"
    MANIFEST = "manifest.json"
    METRICS = "metrics.csv"
    REPORT = "report.html"
    LOCK = ".lock"
    CHECKPOINTS = "checkpoints"
    RESUME = "state/resume.safetensors"
    LLC = "results/llc.json"
    LLC_SAMPLES = "results/llc_samples.safetensors"
    CALIBRATION = "results/calibration.json"
    FOURIER = "results/fourier.json"
    CIRCUIT = "results/circuit.json"
    SWEEP_POINT = "results/sweep_point.json"
    FIGURES = "figures"

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    def file(self, relative: str) -> Path:
        return self.root / relative

    @property
    def config(self) -> Path:
        return self.root / self.CONFIG

    @property
    def manifest(self) -> Path:
        return self.root / self.MANIFEST

    @property
    def metrics(self) -> Path:
        return self.root / self.METRICS

    @property
    def report(self) -> Path:
        return self.root / self.REPORT

    @property
    def lock(self) -> Path:
        return self.root / self.LOCK

    @property
    def checkpoints(self) -> Path:
        return self.root / self.CHECKPOINTS

    @property
    def resume(self) -> Path:
        return self.root / self.RESUME

    @property
    def llc(self) -> Path:
        return self.root / self.LLC

    @property
    def llc_samples(self) -> Path:
        return self.root / self.LLC_SAMPLES

    @property
    def calibration(self) -> Path:
        return self.root / self.CALIBRATION

    @property
    def fourier(self) -> Path:
        return self.root / self.FOURIER

    @property
    def circuit(self) -> Path:
        return self.root / self.CIRCUIT

    @property
    def sweep_point(self) -> Path:
        return self.root / self.SWEEP_POINT

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"step_{step:06d}.safetensors"

    def figure(self, stem: str, suffix: str = "png") -> Path:
        return self.root / self.FIGURES / f"{stem}.{suffix}"

    def is_run(self) -> bool:
        return self.config.exists()


@dataclass(frozen=True)
class SweepPaths:
    root: Path

    SPEC = "sweep.json"
    RESULTS = "results.csv"
    FITS = "fits.json"
    REPORT = "report.html"
    RUNS = "runs"
    FIGURES = "figures"

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    @property
    def spec(self) -> Path:
        return self.root / self.SPEC

    @property
    def results(self) -> Path:
        return self.root / self.RESULTS

    @property
    def fits(self) -> Path:
        return self.root / self.FITS

    @property
    def report(self) -> Path:
        return self.root / self.REPORT

    @property
    def runs(self) -> Path:
        return self.root / self.RUNS

    def run(self, point: str) -> RunPaths:
        return RunPaths(self.runs / point)

    def figure(self, stem: str) -> Path:
        return self.root / self.FIGURES / f"{stem}.png"

    def is_sweep(self) -> bool:
        return self.spec.exists()
