"""A sweep's figures: the final LLC against each numeric grid field (mean ± std over seeds, with a
least-squares line, slope and R²), and the LLC over training averaged across seeds.

A *series* is a combination of the grid values other than the x field and the seed (for
``sweep-p``: random labels off and on). Lines are fitted to the individual points of networks that
generalise (final test accuracy ≥ 0.9) and, for random labels, to every point: the published
finding concerns networks that generalise (REFERENCE §1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from ..layout import RunPaths, SweepPaths
from ..plotting import save_figure
from ..store import read_json
from ..thresholds import GENERALISED_TEST_ACCURACY

NOT_AN_AXIS = ("seed", "random_labels")


@dataclass
class LineFit:
    series: str
    n_points: int
    slope: float
    intercept: float
    r2: float
    x_min: float
    x_max: float
    points: str = "all"  # "all" points, or "ok only": those whose λ̂ status is ok


def _series_key(row: dict[str, Any], grid_keys: list[str], x_field: str | None) -> str:
    parts = [f"{k}={json.dumps(row[k])}" for k in grid_keys if k not in (x_field, "seed")]
    return ", ".join(parts) or "all"


def _counts_for_fit(row: dict[str, Any]) -> bool:
    return bool(row.get("random_labels")) or (row.get("final_test_acc") or 0.0) >= GENERALISED_TEST_ACCURACY


def _done(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("status") == "done" and r.get("llc_mean") is not None]


def axis_fields(grid: dict[str, list[Any]]) -> list[str]:
    """Grid fields with two or more numeric values: each gets an 'LLC against it' figure."""
    return [
        k for k, values in grid.items()
        if k not in NOT_AN_AXIS and len(values) > 1 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    ]


def line_fits(rows: list[dict[str, Any]], grid_keys: list[str], field: str, ok_only: bool = False) -> list[LineFit]:
    """Least-squares lines llc_mean = slope * field + intercept, one per series (``ok_only``: over
    the points whose λ̂ status is ok alone)."""
    groups: dict[str, list[tuple[float, float]]] = {}
    for row in _done(rows):
        if _counts_for_fit(row) and (not ok_only or row.get("llc_status") == "ok"):
            groups.setdefault(_series_key(row, grid_keys, field), []).append((float(row[field]), float(row["llc_mean"])))
    fits = []
    for series, pairs in groups.items():
        x, y = np.array(pairs).T
        if len(set(x)) < 2:
            continue
        slope, intercept = np.polyfit(x, y, 1)
        residual = y - (slope * x + intercept)
        total = ((y - y.mean()) ** 2).sum()
        r2 = 1.0 - (residual**2).sum() / total if total > 0 else 1.0
        fits.append(LineFit(series, len(x), float(slope), float(intercept), float(r2), float(x.min()), float(x.max()),
                            "ok only" if ok_only else "all"))
    return fits


def plot_llc_against(rows: list[dict[str, Any]], grid_keys: list[str], field: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    fits = {f.series: f for f in line_fits(rows, grid_keys, field)}
    series: dict[str, dict[float, list[dict[str, Any]]]] = {}
    for row in _done(rows):
        series.setdefault(_series_key(row, grid_keys, field), {}).setdefault(float(row[field]), []).append(row)
    for (name, by_x), color in zip(sorted(series.items()), plt.cm.tab10.colors):
        xs = sorted(by_x)
        means = [np.mean([r["llc_mean"] for r in by_x[x]]) for x in xs]
        stds = [np.std([r["llc_mean"] for r in by_x[x]], ddof=1) if len(by_x[x]) > 1 else 0.0 for x in xs]
        ax.errorbar(xs, means, yerr=stds, fmt="o", color=color, capsize=3, label=f"{name} (mean ± std over seeds)")
        left_out = [(float(r[field]), r["llc_mean"]) for x in xs for r in by_x[x] if not _counts_for_fit(r)]
        if left_out:
            ax.scatter(*zip(*left_out), facecolors="none", edgecolors=color, s=40, label=f"{name}: test acc < {GENERALISED_TEST_ACCURACY} (not fitted)")
        not_ok = [(float(r[field]), r["llc_mean"]) for x in xs for r in by_x[x] if r.get("llc_status", "ok") != "ok"]
        if not_ok:
            ax.scatter(*zip(*not_ok), marker="s", facecolors="none", edgecolors=color, s=60, label=f"{name}: λ̂ not ok")
        fit = fits.get(name)
        if fit is not None:
            grid = np.linspace(fit.x_min, fit.x_max, 50)  # only where it was fitted
            ax.plot(grid, fit.slope * grid + fit.intercept, color=color, lw=1,
                    label=f"fit: slope {fit.slope:.3g} per unit, R² {fit.r2:.3f}")
    ax.set_xlabel(field)
    ax.set_ylabel("final LLC  λ̂")
    ax.set_title(f"LLC against {field}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _llc_curve(run_dir: Path) -> tuple[list[int], list[float]] | None:
    path = RunPaths(run_dir).llc
    if not path.exists():
        return None
    entries = [e for e in read_json(path, run_dir)["checkpoints"] if e["llc_mean"] is not None]
    return [e["step"] for e in entries], [e["llc_mean"] for e in entries]


def plot_llc_over_training(sweep_dir: Path, rows: list[dict[str, Any]], grid_keys: list[str]) -> plt.Figure | None:
    """Mean ± std across seeds of the LLC at each checkpoint, one curve per series; None when the
    sweep estimated only final checkpoints."""
    curves: dict[str, list[tuple[list[int], list[float]]]] = {}
    for row in _done(rows):
        curve = _llc_curve(sweep_dir / row["run_dir"])
        if curve is not None and len(curve[0]) > 1:
            curves.setdefault(_series_key(row, grid_keys, None), []).append(curve)
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(9.5, 4.6))
    colors = plt.cm.viridis(np.linspace(0, 0.95, len(curves)))
    for (name, members), color in zip(sorted(curves.items()), colors):
        steps = sorted(set.intersection(*(set(s) for s, _ in members)))
        values = np.array([[dict(zip(s, v))[t] for t in steps] for s, v in members])
        mean, std = values.mean(0), values.std(0, ddof=1) if len(values) > 1 else np.zeros(len(steps))
        style = "--" if "random_labels=true" in name else "-"
        ax.plot(steps, mean, style, color=color, label=f"{name} ({len(members)} seeds)")
        ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.15)
    ax.set_xlabel("training step")
    ax.set_ylabel("LLC  λ̂ (mean ± std over seeds)")
    ax.set_title("LLC over training")
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return fig


def save_sweep_figures(sweep_dir: Path, grid: dict[str, list[Any]], rows: list[dict[str, Any]]) -> list[Path]:
    """Write DIR/figures/llc_vs_<field>.png and llc_over_training.png; return their paths."""
    keys = list(grid)
    written = []
    for field in axis_fields(grid):
        if _done(rows):
            path = SweepPaths(sweep_dir).figure(f"llc_vs_{field}")
            save_figure(plot_llc_against(rows, keys, field), path)
            written.append(path)
    over_training = plot_llc_over_training(sweep_dir, rows, keys)
    if over_training is not None:
        path = SweepPaths(sweep_dir).figure("llc_over_training")
        save_figure(over_training, path)
        written.append(path)
    return written
