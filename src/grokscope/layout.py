"""Where things live on disk: the one owner of run- and sweep-directory file names.

Every reader and writer asks these objects for a path, so a file's name is written once::

    RUN/config.json  manifest.json  metrics.csv  report.html  .lock
        checkpoints/step_000060.safetensors  state/resume.safetensors
        results/llc.json  llc_samples.safetensors  llc_refined.json  calibration.json  fourier.json  circuit.json  stages.json  sweep_point.json
        figures/<stem>.png
    SWEEP/sweep.json  results.csv  fits.json  report.html  figures/<stem>.png  runs/<point>/ (run directories)

On the class an entry is its name relative to the directory (``RunPaths.llc == "results/llc.json"``,
for messages); on an instance it is the full path (``RunPaths(run_dir).llc``).
"""

from __future__ import annotations

import re
from pathlib import Path

CHECKPOINT_PATTERN = re.compile(r"^step_(\d+)\.safetensors$")


class Entry:
    """A file or folder at a fixed place under a directory."""

    def __init__(self, relative: str):
        self.relative = relative

    def __get__(self, paths: "_Directory | None", owner: type) -> str | Path:
        return self.relative if paths is None else paths.root / self.relative


class _Directory:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.root == self.root

    def __hash__(self) -> int:
        return hash((type(self), self.root))

    def figure(self, stem: str, suffix: str = "png") -> Path:
        return self.root / "figures" / f"{stem}.{suffix}"


class RunPaths(_Directory):
    config = Entry("config.json")
    manifest = Entry("manifest.json")
    metrics = Entry("metrics.csv")
    report = Entry("report.html")
    lock = Entry(".lock")
    checkpoints = Entry("checkpoints")
    resume = Entry("state/resume.safetensors")
    llc = Entry("results/llc.json")
    llc_samples = Entry("results/llc_samples.safetensors")
    llc_refined = Entry("results/llc_refined.json")
    draws = Entry("results/draws")  # llc/draws.py: one arviz netCDF file per checkpoint (llc --save-draws)
    posterior = Entry("results/posterior.json")  # posterior/: per-pair statistics (grokscope posterior)
    posterior_arrays = Entry("results/posterior.safetensors")
    calibration = Entry("results/calibration.json")
    fourier = Entry("results/fourier.json")
    circuit = Entry("results/circuit.json")
    stages = Entry("results/stages.json")
    sweep_point = Entry("results/sweep_point.json")
    figures = Entry("figures")

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"step_{step:06d}.safetensors"

    def is_run(self) -> bool:
        return self.config.exists()


class SweepPaths(_Directory):
    spec = Entry("sweep.json")
    results = Entry("results.csv")
    fits = Entry("fits.json")
    separation = Entry("separation.json")  # sweeps/separation.py: does an LLC column tell Pizza from Clock?
    report = Entry("report.html")
    runs = Entry("runs")
    figures = Entry("figures")

    def run(self, point: str) -> RunPaths:
        return RunPaths(self.runs / point)

    def is_sweep(self) -> bool:
        return self.spec.exists()
