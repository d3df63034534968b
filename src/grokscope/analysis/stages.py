"""Developmental stages (REFERENCE §9): boundaries at the critical points of the LLC curve
(Hoogland et al. 2024, arXiv 2402.02364), its turning points and the edges of its plateaus, and at
the turning points of the test-loss curve; each stage described by what happens in it and named by
Nanda et al.'s phases (arXiv 2301.05217) where the curves say so.

- λ̂ is read from the estimates whose status is `ok` alone, smoothed by an inverse-variance
  weighted mean of each point and its two neighbours (weights 1/MCSE², the estimates' Monte-Carlo
  errors; equal weights where none is known).
- A turning point counts when the curve moves by at least ``min_swing`` away from it on both sides
  (a zigzag / persistence filter). For λ̂ the swing is the larger of STAGE_MIN_SWING_FRACTION of its
  range and STAGE_NOISE_SE standard errors of a difference of two estimates; for the test loss, the
  fraction of its range.
- A plateau is a run of at least STAGE_PLATEAU_POINTS smoothed λ̂ values whose spread stays below
  half the swing; its edges inside the curve are boundaries (where λ̂ stops or starts changing).
- The test loss is first median-filtered over two checkpoint intervals, so a spike shorter than
  that (a loss spike of a long run) makes no stage.
- Given λ̂ of the same run under a second sampler setting, each λ̂ boundary says whether it held:
  whether the second curve has a λ̂ boundary within one checkpoint of it.
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
    STAGE_PLATEAU_POINTS,
)

FALL = 0.5  # a loss "falls" within a stage when it ends below half of where it started


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


def plateaus(values: Sequence[float], min_swing: float, min_points: int = STAGE_PLATEAU_POINTS) -> list[tuple[int, int]]:
    """Maximal runs [i, j] of at least ``min_points`` values whose spread (max − min) stays below
    half of ``min_swing``, found left to right; runs that touch are joined."""
    runs, i = [], 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and max(values[i : j + 2]) - min(values[i : j + 2]) < min_swing / 2:
            j += 1
        if j - i + 1 >= min_points:
            if runs and runs[-1][1] + 1 == i:  # a slow drift cut into flat pieces is one flat stretch
                i = runs.pop()[0]
            runs.append((i, j))
            i = j + 1
        else:
            i += 1
    return runs


def smooth(values: Sequence[float], errors: Sequence[float | None], steps: Sequence[int], reach: float) -> list[float]:
    """Each value replaced by the inverse-variance weighted mean of itself and its neighbours within
    ``reach`` steps (weights 1/error²; equal weights when an error is unknown or zero): a gap left
    by a skipped estimate is not bridged, so a peak next to it keeps its place."""
    known = [e for e in errors if e is not None and math.isfinite(e) and e > 0]
    fallback = float(np.median(known)) if known else 1.0
    weights = [1.0 / (e if e is not None and math.isfinite(e) and e > 0 else fallback) ** 2 for e in errors]
    out = []
    for i in range(len(values)):
        around = [k for k in range(max(0, i - 1), min(len(values), i + 2)) if abs(steps[k] - steps[i]) <= reach]
        out.append(sum(weights[k] * values[k] for k in around) / sum(weights[k] for k in around))
    return out


def median_filtered(values: Sequence[float], half_width: int) -> list[float]:
    """The running median over 2·half_width + 1 values (fewer at the ends)."""
    return [float(np.median(values[max(0, i - half_width) : i + half_width + 1])) for i in range(len(values))]


def llc_swing(means: Sequence[float], sems: Sequence[float | None]) -> float:
    """The smallest move of λ̂ that counts as a change (see the module docstring)."""
    spread = max(means) - min(means)
    known = [s for s in sems if s is not None and math.isfinite(s)]
    noise = STAGE_NOISE_SE * math.sqrt(2) * float(np.median(known)) if known else 0.0
    return max(STAGE_MIN_SWING_FRACTION * spread, noise)


def _error(entry: dict) -> float | None:
    """An estimate's Monte-Carlo error (its MCSE; the standard error over chains in older files)."""
    value = entry.get("mcse")
    return value if value is not None else entry.get("llc_sem")


def checkpoint_interval(steps: Sequence[int]) -> float:
    """The usual distance between neighbouring checkpoints (their median gap)."""
    return float(np.median(np.diff(steps))) if len(steps) > 1 else 1.0


def llc_boundaries(llc: dict) -> dict[str, Any]:
    """λ̂'s critical points from the `ok` estimates of an llc.json: {step: [sources]}, the smoothed
    curve and the swing (no boundary from fewer than 3 `ok` estimates)."""
    estimated = [e for e in llc["checkpoints"] if e.get("llc_mean") is not None and e.get("step") is not None]
    ok = [e for e in estimated if e.get("status", "ok") == "ok"]
    if len(ok) < 3:
        return {"sources": {}, "steps": [int(e["step"]) for e in ok], "smoothed": [float(e["llc_mean"]) for e in ok], "swing": None}
    steps = [int(e["step"]) for e in ok]
    errors = [_error(e) for e in ok]
    smoothed = smooth([float(e["llc_mean"]) for e in ok], errors, steps, checkpoint_interval([int(e["step"]) for e in estimated]))
    swing = llc_swing(smoothed, errors)
    sources: dict[int, list[str]] = {}
    for index, kind in turning_points(smoothed, swing):
        sources.setdefault(steps[index], []).append(f"λ̂ {kind}")
    for i, j in plateaus(smoothed, swing):
        for index, edge in ((i, "start"), (j, "end")):
            if 0 < index < len(steps) - 1 and not any(abs(index - k) <= 1 for k in (steps.index(s) for s in sources)):
                sources.setdefault(steps[index], []).append(f"λ̂ plateau {edge}")
    return {"sources": sources, "steps": steps, "smoothed": smoothed, "swing": swing}


def find_stages(llc: dict, metrics: list[dict[str, float]], fourier: dict | None = None, second: dict | None = None) -> dict[str, Any]:
    """Stages of a run from its llc.json, its metrics rows and (optionally) fourier.json, and
    ``second``, an llc.json of the same run under another sampler setting: the boundaries (their
    sources, and whether each λ̂ boundary held under the second setting), and per stage the
    curves' values at both ends, λ̂'s trend and a phase."""
    entries = [e for e in llc["checkpoints"] if e["llc_mean"] is not None and e["step"] is not None]
    if len(entries) < 3:
        raise ConfigError(f"stages need an LLC curve of at least 3 checkpoints with an estimate; this one has {len(entries)} "
                          "(run `grokscope llc RUN --checkpoints all`)")
    if not metrics:
        raise ConfigError("stages need the run's loss curves (metrics.csv is empty)")
    own = llc_boundaries(llc)
    llc_steps = [int(e["step"]) for e in entries]
    steps = [int(r["step"]) for r in metrics]
    interval = checkpoint_interval(llc_steps)
    rows_per_interval = max(1, round(interval / max(checkpoint_interval(steps), 1e-9)))
    test_loss = median_filtered([float(r["test_loss"]) for r in metrics], rows_per_interval)
    loss_swing = STAGE_MIN_SWING_FRACTION * (max(test_loss) - min(test_loss))

    sources = {step: list(found) for step, found in own["sources"].items()}
    for index, kind in turning_points(test_loss, loss_swing):
        sources.setdefault(steps[index], []).append(f"test loss {kind}")
    first, last = max(llc_steps[0], steps[0]), min(llc_steps[-1], steps[-1])
    boundaries = sorted(s for s in sources if first < s < last)
    edges = [first, *boundaries, last]
    other = llc_boundaries(second) if second is not None else None

    def held(step: int) -> bool | None:
        """Whether a λ̂ boundary at ``step`` has one of the second setting's within a checkpoint."""
        if other is None or not any(source.startswith("λ̂") for source in sources[step]):
            return None
        return any(abs(step - s) <= interval for s in other["sources"])

    curves = {"llc": (own["steps"], own["smoothed"]) if len(own["steps"]) >= 2 else
              (llc_steps, [float(e["llc_mean"]) for e in entries]),
              **{name: (steps, [float(r[name]) for r in metrics]) for name in ("train_loss", "test_loss", "train_acc", "test_acc")}}
    if fourier:
        rows = [c for c in fourier["checkpoints"] if c.get("restricted_loss") is not None]
        for name in ("restricted_loss", "excluded_loss"):
            if rows:
                curves[name] = ([int(c["step"]) for c in rows], [float(c[name]) for c in rows])
    swing = own["swing"] if own["swing"] is not None else llc_swing([float(e["llc_mean"]) for e in entries], [_error(e) for e in entries])
    stages = [_stage(start, end, curves, swing) for start, end in zip(edges[:-1], edges[1:])]
    peak = own["steps"][int(np.argmax(own["smoothed"]))] if own["steps"] else None
    grokking = next((int(r["step"]) for r in metrics if r["test_acc"] >= GENERALISED_TEST_ACCURACY), None)
    return {
        "boundaries": [{"step": s, "sources": sources[s], "held_under_second_setting": held(s)} for s in boundaries],
        "stages": stages,
        "not_ok_steps": [int(e["step"]) for e in entries if e.get("status", "ok") != "ok"],
        "llc_points_used": len(own["steps"]),
        "second_setting": None if second is None else {"settings": second.get("settings"), "llc_boundaries": sorted(other["sources"])},
        "llc_peak_step": peak,
        "grokking_step": grokking,
        "method": {"llc_min_swing": swing, "test_loss_min_swing": loss_swing, "min_swing_fraction": STAGE_MIN_SWING_FRACTION,
                   "noise_standard_errors": STAGE_NOISE_SE, "plateau_points": STAGE_PLATEAU_POINTS,
                   "test_loss_median_rows": 2 * rows_per_interval + 1, "generalised_accuracy": GENERALISED_TEST_ACCURACY,
                   "llc": "ok estimates only, each smoothed with its two neighbours by inverse-variance weights (1/MCSE²)",
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


def boundary_marks(stages: dict) -> str:
    """The boundaries in one line: each step with its sources and whether it held under a second setting."""
    held = {True: ", held under the second setting", False: ", NOT held under the second setting", None: ""}
    return ", ".join(f"{b['step']} ({' and '.join(b['sources'])}{held[b.get('held_under_second_setting')]})"
                     for b in stages["boundaries"]) or "none"


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
    llc_ax.set_title("Stages: boundaries at the critical points of λ̂ and of the test loss\n"
                     "(dotted: grokking; dashed red: not held under a second sampler setting)", fontsize=10)
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
    for boundary in stages["boundaries"]:  # dashed: a λ̂ boundary the second sampler setting did not show
        if boundary.get("held_under_second_setting") is False:
            for ax in axes:
                ax.axvline(boundary["step"], color="C3", ls="--", lw=0.8)
