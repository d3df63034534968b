"""LLC of a stored run: pick checkpoints, sample them together, write results and figures."""

from __future__ import annotations

from pathlib import Path

from ...atomic import atomic_write_text
from ...errors import ConfigError
from ...figure_process import FigureProcess
from ...plotting import save_figure
from ...run import Run
from ...store import save_tensors
from ..config import SGLDConfig
from ..estimator import sample_llc
from ..figures import plot_llc
from ..result import LLCResult


def select_checkpoints(run: Run, which: str, flag: str = "--checkpoints") -> list[int]:
    """'all', 'last', or a comma list of checkpoint indices (negative counts from the end);
    ``flag`` names the option in messages."""
    steps = run.steps
    if not steps:
        raise ConfigError(f"{run.path} has no checkpoints")
    if which == "all":
        return steps
    if which == "last":
        return steps[-1:]
    try:
        indices = [int(part) for part in which.split(",")]
    except ValueError:
        raise ConfigError(f"{flag}={which!r}: use all, last, or indices such as 0,5,-1") from None
    bad = [i for i in indices if not -len(steps) <= i < len(steps)]
    if bad:
        raise ConfigError(f"{flag}: indices {bad} out of range; the run has {len(steps)} checkpoints")
    return sorted({steps[i] for i in indices})


def run_llc_together(runs: list[Run], config: SGLDConfig, checkpoints: str = "all", progress: bool = True,
                     epsilons: list[float] | None = None) -> list[LLCResult]:
    """The LLC of the chosen checkpoints of several runs of one shape (e.g. the seeds of a sweep
    point) in ONE batched SGLD loop, each run on its own training set (and with ``epsilons``, at
    its own step size). Chains are seeded by (SGLD seed, step, chain) as in :func:`run_llc`, so
    each run's result equals its result alone."""
    steps = [select_checkpoints(run, checkpoints) for run in runs]
    datasets = [run.dataset() for run in runs]
    data = [(d.train_x, d.train_y) for d, run_steps in zip(datasets, steps) for _ in run_steps]
    params = [run.state_dict(step) for run, run_steps in zip(runs, steps) for step in run_steps]
    flat_steps = [step for run_steps in steps for step in run_steps]
    per_set = None if epsilons is None else [{"epsilon": e} for e, run_steps in zip(epsilons, steps) for _ in run_steps]
    result = sample_llc(
        runs[0].new_model(), data, params, loss="cross_entropy",
        config=config, checkpoint_ids=flat_steps, training_steps=flat_steps, progress=progress, per_set=per_set,
    )
    parts, start = [], 0
    for index, (run, run_steps) in enumerate(zip(runs, steps)):
        own = {} if epsilons is None else {"epsilon": epsilons[index]}
        parts.append(result.part(start, start + len(run_steps), run=str(run.path), **own))
        start += len(run_steps)
    return parts


def save_llc(run: Run, result: LLCResult, figures: FigureProcess | None = None) -> tuple[Path, Path]:
    """Write RUN/results/llc.json and RUN/figures/llc.png (atomically; the figure drawn by
    ``figures`` when given and able, figure_process.py), and, when samples were
    saved, the last checkpoint's SGLD snapshots and their losses to RUN/results/llc_samples.safetensors
    (samples of an earlier estimate are removed, so the report never draws them beside these
    results, and so are the stages found from the earlier λ̂ curve and its saved draws)."""
    json_path, figure_path = run.paths.llc, run.paths.figure("llc")
    atomic_write_text(json_path, result.to_json() + "\n")
    run.paths.stages.unlink(missing_ok=True)  # derived from the λ̂ curve just replaced: `grokscope stages` remakes it
    run.paths.figure("stages").unlink(missing_ok=True)
    stored = result.to_dict()
    if figures is None or not figures.draw("llc", [stored, run.metrics], figure_path):
        save_figure(plot_llc(stored, run.metrics), figure_path)
    run.paths.llc_samples.unlink(missing_ok=True)
    for stale in run.paths.draws.glob("draws-*.nc"):  # the earlier estimate's draws (llc --save-draws writes these)
        stale.unlink()
    if result.samples is not None:
        chains = result.settings["chains"]
        last = slice(result.samples.shape[1] - chains, None)
        save_tensors(
            run.paths.llc_samples,
            {"samples": result.samples[:, last], "losses": result.sample_losses[:, last]},
            metadata={"step": str(result.entries[-1].step)},
        )
    return json_path, figure_path
