"""DIR/results.csv: one row per finished or failed point, in grid order, rewritten atomically."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text
from ..layout import SweepPaths
from ..store import read_csv_rows

RESULT_COLUMNS = [
    "status", "final_train_loss", "final_test_loss", "final_train_acc", "final_test_acc", "grokking_step",
    "llc_step", "llc_mean", "llc_std", "llc_status", "llc_mcse", "llc_mala", "llc_steps_used", "llc_r_hat", "llc_diverged_chains",
    "verdict", "key_frequencies", "gradient_symmetricity", "distance_irrelevance", "sum_dependence",
    "batched", "train_seconds", "llc_seconds", "refine_seconds", "analysis_seconds", "config_hash", "run_dir", "error",
]
REFINED_PREFIXES = ("wr_", "dr_")  # refined-LLC columns (llc/runs/refine.py table_columns), after the fixed ones


def refined_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The refined-LLC columns the rows hold, in first-seen order."""
    return list(dict.fromkeys(key for row in rows for key in row if key.startswith(REFINED_PREFIXES)))


def columns(grid_keys: list[str], rows: list[dict[str, Any]] = ()) -> list[str]:
    return ["point", *grid_keys, *RESULT_COLUMNS, *refined_columns(rows)]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.8g}"
    return str(value)


def write_results(sweep_dir: Path, grid_keys: list[str], rows: list[dict[str, Any]]) -> Path:
    """Write the table in one atomic replace: a reader never sees a half row or a duplicate."""
    names = [row["point"] for row in rows]
    if len(set(names)) != len(names):
        raise ValueError("results table: a point appears twice")
    buffer = io.StringIO()
    fields = columns(grid_keys, rows)
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _cell(row.get(key)) for key in fields})
    path = SweepPaths(sweep_dir).results
    atomic_write_text(path, buffer.getvalue())
    return path


def read_results(sweep_dir: Path) -> list[dict[str, str]]:
    """The table's rows as strings (empty cells for missing values)."""
    return read_csv_rows(SweepPaths(sweep_dir).results, ["point", "status"], sweep_dir)
