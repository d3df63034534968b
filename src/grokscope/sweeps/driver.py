"""run_sweep: expand a spec into points, skip the finished ones, run the rest in units on an
executor, and keep DIR/results.csv, DIR/fits.json and the figures up to date.

    DIR/sweep.json  results.csv  fits.json  figures/*.png  runs/<point>/ (ordinary run directories)
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..atomic import atomic_write_json, atomic_write_text
from ..errors import ConfigError
from ..layout import SweepPaths
from ..store import RunLock
from .executors import EXECUTORS, default_workers
from .fits import axis_fields, line_fits, save_sweep_figures
from .separation import separation
from .spec import SweepSpec, sweep_points, work_units
from .table import write_results
from .work import finished_row, unit_tasks


@dataclass
class SweepOutcome:
    path: Path
    rows: list[dict[str, Any]]
    reused: int
    ran: int
    seconds: float
    figures: list[Path] = field(default_factory=list)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == "failed"]

    def summary(self) -> str:
        return (
            f"{len(self.rows)} points: {self.ran} run now, {self.reused} reused, {len(self.failed)} failed; "
            f"{self.seconds:.1f} s; table {SweepPaths(self.path).results}"
        )


def run_sweep(
    spec: SweepSpec,
    out: str | Path,
    executor: str = "local",
    address: str | None = None,
    workers: int | None = None,
    threads: int = 1,
    progress: bool = True,
) -> SweepOutcome:
    """Run every point of ``spec`` not yet finished in ``out``; return the whole table."""
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor={executor!r}: allowed are {', '.join(EXECUTORS)}")
    if address and executor != "ray":
        raise ConfigError("--address is for --executor ray")
    if threads < 1 or (workers is not None and workers < 1):
        raise ConfigError("--workers and --threads must be at least 1")
    workers = workers or default_workers(threads)
    sweep_dir = Path(out).resolve()
    points = sweep_points(spec)
    keys = list(spec.grid)
    start = time.perf_counter()
    with RunLock(sweep_dir):
        atomic_write_text(SweepPaths(sweep_dir).spec, spec.to_json() + "\n")
        rows: dict[str, dict[str, Any]] = {}
        for point in points:
            row = finished_row(SweepPaths(sweep_dir).run(point.name).root, point, spec.work_hash())
            if row is not None:
                rows[point.name] = row
        reused = len(rows)
        pending = [p for p in points if p.name not in rows]
        tasks = unit_tasks(sweep_dir, work_units(pending, spec.batch_seeds, min_units=workers), spec, threads)

        def table() -> list[dict[str, Any]]:
            return [rows[p.name] for p in points if p.name in rows]

        write_results(sweep_dir, keys, table())
        bar = tqdm(total=len(pending), desc=f"sweep {spec.name}", unit="point", disable=not progress, file=sys.stderr)
        units = EXECUTORS[executor](tasks, address, workers)
        for _, unit_rows in units:
            rows.update({row["point"]: row for row in unit_rows})
            write_results(sweep_dir, keys, table())
            bar.update(len(unit_rows))
            bar.set_postfix(failed=sum(r["status"] == "failed" for r in rows.values()), refresh=False)
        bar.close()
        figures = save_sweep_figures(sweep_dir, spec.grid, table())
        fits = {f: [asdict(fit) for ok_only in (False, True) for fit in line_fits(table(), keys, f, ok_only)]
                for f in axis_fields(spec.grid)}
        atomic_write_json(SweepPaths(sweep_dir).fits, fits)
        separated = separation(table())
        atomic_write_json(SweepPaths(sweep_dir).separation, separated)
    outcome = SweepOutcome(sweep_dir, table(), reused, len(pending), time.perf_counter() - start, figures)
    if progress:
        _print_summary(outcome, fits, separated)
    return outcome


def _print_summary(outcome: SweepOutcome, fits: dict[str, list[dict[str, Any]]], separated: list[dict[str, Any]]) -> None:
    print(outcome.summary())
    for field_name, field_fits in fits.items():
        for fit in field_fits:
            print(f"LLC against {field_name} [{fit['series']}]: slope {fit['slope']:.4g}, R² {fit['r2']:.3f} over {fit['n_points']} points ({fit['points']})")
    for entry in separated:
        print(f"{entry['column']} as a Pizza score ({entry['n_pizza']} pizza, {entry['n_clock']} clock points): "
              f"AUROC {entry['auroc']:.2f} [{entry['low']:.2f}, {entry['high']:.2f}]")
    for row in outcome.failed:
        print(f"failed: {row['point']}: {row['error']}")
    for path in outcome.figures:
        print(f"figure: {path}")
