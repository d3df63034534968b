"""A run's stages from its stored curves: results/stages.json and figures/stages.png."""

from __future__ import annotations

import shlex
from pathlib import Path

from ..atomic import atomic_write_json
from ..errors import ConfigError
from ..plotting import save_figure
from ..run import Run
from ..store import read_json
from .stages import find_stages, plot_stages


def save_stages(run: Run, second: str | Path | None = None) -> dict:
    """Find the stages of ``run`` from results/llc.json, its metrics and (when present)
    results/fourier.json, and with ``second`` (an llc.json of the same run under another sampler
    setting) whether each λ̂ boundary holds under it; write results/stages.json and
    figures/stages.png; return the stages."""
    if not run.paths.llc.exists():
        raise ConfigError(f"{run.path} has no LLC curve ({run.paths.llc.name} missing): run `grokscope llc {shlex.quote(str(run.path))}` first")
    llc = read_json(run.paths.llc, run.path)
    fourier = read_json(run.paths.fourier, run.path) if run.paths.fourier.exists() else None
    other = None
    if second is not None:
        second = Path(second)
        if not second.is_file():
            raise ConfigError(f"--second-llc {second}: no such file (an llc.json of this run under another setting)")
        other = read_json(second, second.parent)
    try:
        stages = find_stages(llc, run.metrics, fourier, other)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
        raise ConfigError(f"{run.paths.llc}, {run.paths.fourier.name} or the second setting's llc.json has an unexpected structure ({type(err).__name__}: "
                          f"{str(err)[:120]}); rerun `grokscope llc {shlex.quote(str(run.path))}`") from None
    stages["run"] = str(run.path)
    atomic_write_json(run.paths.stages, stages)
    save_figure(plot_stages(llc, run.metrics, stages), run.paths.figure("stages"))
    return stages
