"""Developmental stages (REFERENCE §9): boundaries at the critical points of the LLC curve
(Hoogland et al. 2024, arXiv 2402.02364) and of the test-loss curve, each stage described by what
happens in it and named by Nanda et al.'s phases (arXiv 2301.05217) where the curves say so.

A critical point is a turning point of the curve that survives its noise: the curve must move by
at least ``min_swing`` away from it on both sides (a zigzag / persistence filter). For λ̂ the swing
is the larger of STAGE_MIN_SWING_FRACTION of its range and STAGE_NOISE_SE standard errors of a
difference of two estimates; for the test loss, the fraction of its range.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError
from ..thresholds import (
    GENERALISED_TEST_ACCURACY,
    STAGE_MIN_SWING_FRACTION,
    STAGE_NOISE_SE,
)

FALL = 0.95  # a loss "falls" within a stage when it ends below 95% of where it started


def turning_points(values: Sequence[float], min_swing: float) -> list[tuple[int, str]]:
    """Indices of the curve's maxima and minima that the curve leaves by at least ``min_swing``
    on both sides (interior points only), with "max" or "min": a zigzag filter."""
    points: list[tuple[int, str]] = []
    trend, extreme, low, high = 0, 0, 0, 0  # trend: +1 rising, -1 falling, 0 not yet clear
    for i in range(1, len(values)):
        v = values[i]
        if trend == 0:
            if v - values[low] >= min_swing:
                trend, extreme = 1, i
            elif values[high] - v >= min_swing:
                trend, extreme = -1, i
            low, high = (i if v < values[low] else low), (i if v > values[high] else high)
        elif trend * (v - values[extreme]) >= 0:
            extreme = i
        elif abs(v - values[extreme]) >= min_swing:
            points.append((extreme, "max" if trend > 0 else "min"))
            trend, extreme = -trend, i
    return points


def llc_swing(means: Sequence[float], sems: Sequence[float | None]) -> float:
    """The smallest move of λ̂ that counts as a change (see the module docstring)."""
    spread = max(means) - min(means)
    known = [s for s in sems if s is not None and math.isfinite(s)]
    noise = STAGE_NOISE_SE * math.sqrt(2) * float(np.median(known)) if known else 0.0
    return max(STAGE_MIN_SWING_FRACTION * spread, noise)


def find_stages(llc: dict, metrics: list[dict[str, float]], fourier: dict | None = None) -> dict[str, Any]:
    """Stages of a run from its llc.json, its metrics rows and (optionally) fourier.json: the
    boundaries, their sources, and per stage the curves' values at both ends, λ̂'s trend and a phase."""
    entries = [e for e in llc["checkpoints"] if e["llc_mean"] is not None and e["step"] is not None]
    if len(entries) < 3:
        raise ConfigError(f"stages need an LLC curve of at least 3 checkpoints with an estimate; this one has {len(entries)} "
                          "(run `grokscope llc RUN --checkpoints all`)")
    if not metrics:
        raise ConfigError("stages need the run's loss curves (metrics.csv is empty)")
    llc_steps = [int(e["step"]) for e in entries]
    llc_means = [float(e["llc_mean"]) for e in entries]
    swing = llc_swing(llc_means, [e.get("llc_sem") for e in entries])
    steps = [int(r["step"]) for r in metrics]
    test_loss = [float(r["test_loss"]) for r in metrics]
    loss_swing = STAGE_MIN_SWING_FRACTION * (max(test_loss) - min(test_loss))

    sources: dict[int, list[str]] = {}
    for index, kind in turning_points(llc_means, swing):
        sources.setdefault(llc_steps[index], []).append(f"λ̂ {kind}")
    for index, kind in turning_points(test_loss, loss_swing):
        sources.setdefault(steps[index], []).append(f"test loss {kind}")
    first, last = max(llc_steps[0], steps[0]), min(llc_steps[-1], steps[-1])
    boundaries = sorted(s for s in sources if first < s < last)
    edges = [first, *boundaries, last]

    curves = {"llc": (llc_steps, llc_means), **{name: (steps, [float(r[name]) for r in metrics])
                                                for name in ("train_loss", "test_loss", "train_acc", "test_acc")}}
    if fourier:
        rows = [c for c in fourier["checkpoints"] if c.get("restricted_loss") is not None]
        for name in ("restricted_loss", "excluded_loss"):
            if rows:
                curves[name] = ([int(c["step"]) for c in rows], [float(c[name]) for c in rows])
    stages = [_stage(start, end, curves, swing) for start, end in zip(edges[:-1], edges[1:])]
    peak = llc_steps[int(np.argmax(llc_means))]
    grokking = next((int(r["step"]) for r in metrics if r["test_acc"] >= GENERALISED_TEST_ACCURACY), None)
    ok = [e for e in entries if e.get("status", "ok") == "ok"]
    ok_means = [float(e["llc_mean"]) for e in ok]
    return {
        "boundaries": [{"step": s, "sources": sources[s]} for s in boundaries],
        "stages": stages,
        # the same λ̂ turning points found from the estimates whose status is ok alone (None: fewer than 3)
        "not_ok_steps": [int(e["step"]) for e in entries if e.get("status", "ok") != "ok"],
        "llc_turns_ok_only": None if len(ok) < 3 else [
            {"step": int(ok[i]["step"]), "kind": kind}
            for i, kind in turning_points(ok_means, llc_swing(ok_means, [e.get("llc_sem") for e in ok]))],
        "llc_peak_step": peak,
        "grokking_step": grokking,
        "method": {"llc_min_swing": swing, "test_loss_min_swing": loss_swing, "min_swing_fraction": STAGE_MIN_SWING_FRACTION,
                   "noise_standard_errors": STAGE_NOISE_SE, "generalised_accuracy": GENERALISED_TEST_ACCURACY,
                   "reference": "Hoogland et al. 2024 (arXiv 2402.02364); phases after Nanda et al. 2023 (arXiv 2301.05217)"},
    }


def _at(curve: tuple[list[int], list[float]], step: int) -> float:
    return float(np.interp(step, curve[0], curve[1]))


def _stage(start: int, end: int, curves: dict, swing: float) -> dict[str, Any]:
    ends = {name: [_at(curve, start), _at(curve, end)] for name, curve in curves.items()}
    change = ends["llc"][1] - ends["llc"][0]
    trend = "rising" if change >= swing else "falling" if change <= -swing else "flat"
    stage = {"start": start, "end": end, "llc_trend": trend, **ends}
    stage["phase"] = _phase(ends)
    stage["description"] = "; ".join(
        [f"λ̂ {trend} {ends['llc'][0]:.1f} → {ends['llc'][1]:.1f}"]
        + [f"{name.replace('_', ' ')} {a:.3g} → {b:.3g}" for name, (a, b) in ends.items() if name != "llc"]
    )
    return stage


def _phase(ends: dict[str, list[float]]) -> str:
    """Nanda et al.'s phase that the stage's curves show, or "stable" when none moves."""
    falls = {name: ends[name][1] < FALL * ends[name][0] for name in ends if name.endswith("_loss")}
    acc_start, acc_end = ends["test_acc"]
    if falls["train_loss"] and not falls["test_loss"]:
        return "memorisation"
    if acc_start < GENERALISED_TEST_ACCURACY <= acc_end or (acc_start >= GENERALISED_TEST_ACCURACY and falls["test_loss"]):
        return "cleanup"
    if falls["test_loss"]:
        return "circuit formation"
    return "stable"


def stage_table(stages: dict) -> list[list[str]]:
    """Rows (steps, phase, λ̂ trend, description) for the CLI and the report."""
    return [[f"{s['start']}–{s['end']}", s["phase"], s["llc_trend"], s["description"]] for s in stages["stages"]]


def plot_stages(llc: dict, metrics: list[dict[str, float]], stages: dict):
    """λ̂ over training (± std) above the train and test loss, the stages shaded and named."""
    import matplotlib.pyplot as plt

    from ..llc.figures import draw_llc_curve

    fig, (llc_ax, loss_ax) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    draw_llc_curve(llc_ax, llc["checkpoints"], color="C0", label="λ̂")
    llc_ax.set_ylabel("λ̂ (LLC)")
    steps = [r["step"] for r in metrics]
    loss_ax.plot(steps, [r["train_loss"] for r in metrics], label="train loss")
    loss_ax.plot(steps, [r["test_loss"] for r in metrics], label="test loss")
    loss_ax.set(yscale="log", xlabel="training step", ylabel="cross-entropy")
    shade_stages([llc_ax, loss_ax], stages)
    llc_ax.legend(loc="center right")
    loss_ax.legend(loc="lower left")
    llc_ax.set_title("Stages: boundaries at the critical points of λ̂ and of the test loss (dotted: grokking)")
    fig.tight_layout()
    return fig


def shade_stages(axes, stages: dict) -> None:
    """Alternate shading for each stage on every axis, its phase written at the top of the first
    (on alternate rows, so the names of neighbouring short stages do not overlap)."""
    for i, stage in enumerate(stages["stages"]):
        for ax in axes:
            ax.axvspan(stage["start"], stage["end"], color="0.85" if i % 2 else "0.93", zorder=0)
        axes[0].annotate(stage["phase"], ((stage["start"] + stage["end"]) / 2, 0.97 - 0.06 * (i % 2)), xycoords=("data", "axes fraction"),
                         ha="center", va="top", fontsize=7)
    if stages["grokking_step"] is not None:
        for ax in axes:
            ax.axvline(stages["grokking_step"], color="k", ls=":", lw=0.8)
