"""One unit of a sweep, run in a worker (a local process or a Ray task): train its points
together, sample their LLC together, summarise each point as one row, and record the finished
points in their run directories (``RUN/results/sweep_point.json``) so a rerun can skip them.

The unit sets its own torch thread count, so a unit computes the same numbers on any executor.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..analysis import analyze_run
from ..atomic import atomic_write_json
from ..layout import RunPaths, SweepPaths
from ..llc.config import sgld_config
from ..llc.result import LLCResult
from ..llc.runs.checkpoints import run_llc_together, save_llc
from ..llc.runs.refine import run_refined, save_refined, table_columns
from ..llc.tuning.auto import run_llc_together_auto
from ..run import Run
from ..store import read_json
from ..threads import torch_threads
from ..training import train_together
from .spec import SweepPoint

TIMING_COLUMNS = ("train_seconds", "llc_seconds", "refine_seconds", "analysis_seconds")


@dataclass(frozen=True)
class UnitTask:
    """Everything a worker needs (picklable): the points and what to do at each."""

    sweep_dir: str
    points: tuple[SweepPoint, ...]
    llc_checkpoints: str
    sgld: dict[str, Any]
    refine: tuple[str, ...]
    analyses: bool
    work_hash: str
    threads: int

    def run_dir(self, point: SweepPoint) -> Path:
        return SweepPaths(self.sweep_dir).run(point.name).root


def finished_row(run_dir: Path, point: SweepPoint, work_hash: str) -> dict[str, Any] | None:
    """The stored row of a point finished with this config and this plan, else None."""
    path = RunPaths(run_dir).sweep_point
    if not path.exists():
        return None
    try:
        record = read_json(path, run_dir)
    except Exception:  # a damaged record means: redo the point
        return None
    if record.get("config_hash") != point.config.hash() or record.get("work_hash") != work_hash:
        return None
    return record.get("row")


def _error_text(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}".replace("\n", " ")


def _together_or_alone(fn: Callable[[list], list], items: list, errors: dict[int, str]) -> dict[int, Any]:
    """fn over all items at once; if that fails, item by item, so one bad point fails alone.
    Returns index -> result for the items that succeeded and records the others in ``errors``."""
    live = [i for i in range(len(items)) if i not in errors]
    if not live:
        return {}
    try:
        return dict(zip(live, fn([items[i] for i in live])))
    except Exception as err:
        if len(live) == 1:
            errors[live[0]] = _error_text(err)
            return {}
        print(f"grokscope sweep: a batch of {len(live)} points failed ({_error_text(err)}); "
              "running them one by one", file=sys.stderr)
    results = {}
    for i in live:
        try:
            results[i] = fn([items[i]])[0]
        except Exception as err:
            errors[i] = _error_text(err)
    return results


def run_unit(task: UnitTask) -> list[dict[str, Any]]:
    """Run a unit with its share of threads and return one row per point (status 'done' or
    'failed' with the error)."""
    with torch_threads(task.threads):
        return _unit_rows(task)


def _unit_rows(task: UnitTask) -> list[dict[str, Any]]:
    points = list(task.points)
    errors: dict[int, str] = {}
    timings: dict[str, float] = dict.fromkeys(TIMING_COLUMNS, 0.0)

    start = time.perf_counter()
    runs = _together_or_alone(
        lambda pts: train_together([p.config for p in pts], [task.run_dir(p) for p in pts], progress=False,
                                   command=f"grokscope sweep --out {task.sweep_dir} (a point of the sweep)"), points, errors
    )
    timings["train_seconds"] = time.perf_counter() - start

    llc: dict[int, Any] = {}
    if task.llc_checkpoints != "none":
        start = time.perf_counter()
        config = sgld_config(**task.sgld)
        estimate = run_llc_together if "epsilon" in task.sgld else run_llc_together_auto  # ε from the data unless given
        order = [i for i in range(len(points)) if i in runs]
        llc_errors: dict[int, str] = {}
        found = _together_or_alone(
            lambda rs: estimate(rs, config, task.llc_checkpoints, progress=False), [runs[i] for i in order], llc_errors
        )
        for position, i in enumerate(order):
            if position in found:
                llc[i] = found[position]
                save_llc(runs[i], found[position])
            else:
                errors[i] = llc_errors[position]
        timings["llc_seconds"] = time.perf_counter() - start

    refined: dict[int, dict[str, float]] = {}
    if task.refine:
        start = time.perf_counter()
        for i in [i for i in llc if i not in errors]:
            try:
                refined[i] = _refine(runs[i], config, task, llc[i])
            except Exception as err:
                errors[i] = _error_text(err)
        timings["refine_seconds"] = time.perf_counter() - start

    rows = []
    for i, point in enumerate(points):
        if i in errors:
            rows.append(failed_row(point, errors[i]))
            continue
        start = time.perf_counter()
        try:
            summary = _analysis_summary(runs[i]) if task.analyses else {}
        except Exception as err:
            rows.append(failed_row(point, _error_text(err)))
            continue
        row = _row(point, runs[i], llc.get(i), {**summary, **refined.get(i, {})}, len(runs), timings)
        row["analysis_seconds"] = round(time.perf_counter() - start, 3)
        atomic_write_json(RunPaths(task.run_dir(point)).sweep_point, {"config_hash": point.config.hash(), "work_hash": task.work_hash, "row": row})
        rows.append(row)
    return rows


def _refine(run: Run, config, task: UnitTask, whole) -> dict[str, float]:
    """Each refinement of the plan at the LLC's checkpoints (``whole``: the run's LLC there, not
    sampled again), saved in the run; its table columns."""
    columns: dict[str, float] = {}
    for spec in task.refine:
        parts = run_refined(run, config, spec, task.llc_checkpoints, progress=False, whole=whole)
        save_refined(run, spec, parts)
        columns.update(table_columns(spec, parts))
    return columns


def _analysis_summary(run: Run) -> dict[str, Any]:
    """The final checkpoint's circuit verdict and the numbers behind it."""
    analysis = analyze_run(run, progress=False, last=1)
    circuit = analysis.checkpoints[-1].circuit
    return {
        "verdict": circuit["verdict"],
        "key_frequencies": " ".join(map(str, analysis.key_frequencies)),
        "gradient_symmetricity": circuit["gradient_symmetricity"],
        "distance_irrelevance": circuit["distance_irrelevance"],
        "sum_dependence": circuit["sum_dependence"],
    }


def _base_row(point: SweepPoint) -> dict[str, Any]:
    return {
        "point": point.name,
        **point.values,
        "config_hash": point.config.hash(),
        "run_dir": str(Path(SweepPaths.runs) / point.name),
    }


def _row(point: SweepPoint, run: Run, llc: LLCResult | None, summary: dict, batched: int, timings: dict) -> dict[str, Any]:
    last = run.metrics[-1]
    entry = llc.entries[-1] if llc is not None else None
    return {
        **_base_row(point),
        "status": "done",
        "final_train_loss": last["train_loss"],
        "final_test_loss": last["test_loss"],
        "final_train_acc": last["train_acc"],
        "final_test_acc": last["test_acc"],
        "grokking_step": run.grokking_step(),
        "llc_step": None if entry is None else entry.step,
        "llc_mean": None if entry is None else entry.llc_mean,
        "llc_std": None if entry is None else entry.llc_std,
        "llc_status": None if entry is None else entry.status,
        "llc_mcse": None if entry is None else entry.mcse,
        "llc_mala": None if entry is None else entry.mala_acceptance,
        "llc_steps_used": None if entry is None else entry.steps_used,
        "llc_r_hat": None if entry is None else entry.r_hat,
        "llc_diverged_chains": None if entry is None else entry.diverged_chains,
        **summary,
        "batched": batched,
        **{k: round(v, 3) for k, v in timings.items()},
        "error": "",
    }


def failed_row(point: SweepPoint, error: str) -> dict[str, Any]:
    return {**_base_row(point), "status": "failed", "error": error}


def unit_tasks(sweep_dir: Path, units: Sequence[Sequence[SweepPoint]], spec, threads: int) -> list[UnitTask]:
    return [
        UnitTask(str(sweep_dir), tuple(unit), spec.llc.checkpoints, dict(spec.llc.sgld), tuple(spec.refine), spec.analyses,
                 spec.work_hash(), threads)
        for unit in units
    ]
