import json
import math

import numpy as np
import pytest
from cli_helper import run_cli

from grokscope import ConfigError, build_config, train
from grokscope.analysis.stages import find_stages, plateaus, smooth, turning_points
from grokscope.llc import sgld_config
from grokscope.llc.api import run_llc
from grokscope.llc.runs.checkpoints import save_llc


def test_turning_points_of_a_curve_with_known_critical_points():
    steps = np.arange(0, 200)
    curve = np.sin(steps / 20.0)  # maxima at 20(π/2 + 2πk), minima at 20(3π/2 + 2πk)
    wiggles = 0.02 * np.sin(steps * 1.7)  # noise far below the swing
    found = turning_points(list(curve + wiggles), min_swing=0.5)
    expected = [(round(20 * math.pi / 2), "max"), (round(20 * 3 * math.pi / 2), "min"), (round(20 * 5 * math.pi / 2), "max")]
    assert [kind for _, kind in found] == [kind for _, kind in expected]
    assert all(abs(i - j) <= 2 for (i, _), (j, _) in zip(found, expected))
    assert turning_points(list(wiggles), min_swing=0.5) == []  # noise alone has no stages
    assert turning_points([0, 1, 2, 3], 0.5) == []  # the ends are not critical points


def _synthetic(llc_values, test_loss, train_loss, test_acc, sem=1.0):
    steps = list(range(0, 10 * len(llc_values), 10))
    llc = {"checkpoints": [{"step": s, "llc_mean": v, "llc_std": 2 * sem, "llc_sem": sem} for s, v in zip(steps, llc_values)]}
    metrics = [{"step": s, "train_loss": a, "test_loss": b, "train_acc": 0.0, "test_acc": c}
               for s, a, b, c in zip(steps, train_loss, test_loss, test_acc)]
    return llc, metrics


def test_stages_of_a_synthetic_run_are_found_and_named():
    # λ̂ rises to a peak at step 60 then falls; the test loss peaks at step 30; test accuracy crosses 0.9 at step 80
    llc_values = [10, 20, 30, 40, 60, 90, 120, 100, 80, 70, 65]
    test_loss = [4.0, 4.1, 4.2, 4.3, 3.5, 2.5, 1.8, 1.0, 0.3, 0.1, 0.05]
    train_loss = [4.0, 3.5, 3.0, 2.5, 1.5, 0.8, 0.4, 0.2, 0.05, 0.02, 0.01]
    test_acc = [0.0, 0.0, 0.0, 0.0, 0.1, 0.3, 0.5, 0.7, 0.95, 1.0, 1.0]
    stages = find_stages(*_synthetic(llc_values, test_loss, train_loss, test_acc))
    # the test loss's bump of 7% before step 30 is no turning point once the curve is median-filtered
    assert [(b["step"], b["sources"]) for b in stages["boundaries"]] == [(60, ["λ̂ max"])]
    assert [(s["start"], s["end"], s["phase"], s["llc_trend"]) for s in stages["stages"]] == [
        (0, 60, "circuit formation", "rising"), (60, 100, "cleanup", "falling")]
    assert stages["llc_peak_step"] == 60 and stages["grokking_step"] == 80
    json.dumps(stages)  # plain JSON


def test_noise_within_the_error_bars_makes_no_boundary():
    flat = [100 + (3 if i % 2 else -3) for i in range(12)]  # ±3 around 100 with a standard error of 5
    losses = [1.0] * 12
    stages = find_stages(*_synthetic(flat, losses, losses, [1.0] * 12, sem=5.0))
    assert stages["boundaries"] == []
    assert [(s["phase"], s["llc_trend"]) for s in stages["stages"]] == [("stable", "flat")]


def test_too_short_a_curve_is_refused_clearly():
    llc, metrics = _synthetic([1.0, 2.0], [1.0, 1.0], [1.0, 1.0], [0.0, 0.0])
    with pytest.raises(ConfigError, match="at least 3 checkpoints"):
        find_stages(llc, metrics)


@pytest.mark.slow
def test_example_run_has_a_boundary_between_the_llc_peak_and_grokking(tmp_path):
    run = train(build_config("example"), tmp_path / "example", progress=False)
    missing = run_cli("stages", run.path)
    assert missing.returncode != 0 and "grokscope llc" in missing.stderr and "Traceback" not in missing.stderr
    save_llc(run, run_llc(run, sgld_config(epsilon=5e-4), "all", progress=False))  # the demo's settings
    done = run_cli("stages", run.path)
    assert done.returncode == 0, done.stderr
    stages = json.loads((run.path / "results" / "stages.json").read_text())
    peak, grokking = stages["llc_peak_step"], stages["grokking_step"]
    assert peak < grokking
    assert any(peak <= b["step"] <= grokking for b in stages["boundaries"])
    phases = [(stage["end"], stage["phase"]) for stage in stages["stages"]]
    assert any(phase == "memorisation" and end <= grokking for end, phase in phases) and phases[-1][1] == "cleanup"
    assert stages["stages"][0]["phase"] != "memorisation"  # its train loss falls by a tenth: too little for the name
    assert (run.path / "figures" / "stages.png").read_bytes().startswith(b"\x89PNG")


def test_stages_say_which_points_are_not_ok_and_where_the_ok_points_alone_turn():
    """A single unreliable spike makes a λ̂ maximum with every point; without it there is none."""
    values = [10, 20, 30, 40, 50, 200, 60, 70, 80, 90, 100]
    llc, metrics = _synthetic(values, [1.0] * 11, [1.0] * 11, [1.0] * 11)
    for entry in llc["checkpoints"]:
        entry["status"] = "unreliable" if entry["llc_mean"] == 200 else "ok"
    stages = find_stages(llc, metrics)
    assert stages["not_ok_steps"] == [50] and stages["boundaries"] == [] and stages["llc_points_used"] == 10


def _known_stages(rng, fall=True):
    """λ̂ over 40 checkpoints (steps 0, 10, ..., 390): a rise to step 100, a plateau to step 200, a
    fall to step 300 (or none), flat after it; noise of standard deviation 2 with MCSE 2."""
    steps = np.arange(0, 400, 10)
    truth = np.interp(steps, [0, 100, 200, 300, 390], [50, 200, 200, 120 if fall else 200, 120 if fall else 200])
    values = truth + rng.normal(0, 2.0, len(steps))
    return {"checkpoints": [{"step": int(s), "llc_mean": float(v), "mcse": 2.0, "status": "ok"} for s, v in zip(steps, values)]}


def test_known_stages_are_found_through_noise_unsettled_points_and_a_loss_spike():
    rng = np.random.default_rng(0)
    llc = _known_stages(rng)
    llc["checkpoints"][15].update(llc_mean=400.0, status="unreliable")  # a wild, flagged estimate inside the plateau
    steps = list(range(0, 400, 10))
    test_loss = [4.0 * math.exp(-s / 150) for s in steps]
    test_loss[25] *= 3.0  # a loss spike one evaluation long
    metrics = [{"step": s, "train_loss": 0.5 * t, "test_loss": t, "train_acc": 1.0, "test_acc": 0.0} for s, t in zip(steps, test_loss)]
    stages = find_stages(llc, metrics, second=_known_stages(rng))
    found = [b["step"] for b in stages["boundaries"]]
    assert len(found) == 3 and all(abs(f - want) <= 10 for f, want in zip(found, (100, 200, 300))), stages["boundaries"]
    assert not any(source.startswith("test loss") for b in stages["boundaries"] for source in b["sources"])
    assert all(b["held_under_second_setting"] for b in stages["boundaries"])  # the same curve, other noise
    without_fall = find_stages(llc, metrics, second=_known_stages(rng, fall=False))
    held = {b["step"]: b["held_under_second_setting"] for b in without_fall["boundaries"]}
    assert held[found[0]] and not held[found[1]] and not held[found[2]]  # only the plateau's start is in both
    assert find_stages(llc, metrics)["boundaries"][0]["held_under_second_setting"] is None  # no second setting given


def test_plateaus_and_smoothing():
    assert plateaus([0, 10, 20, 20.5, 20.2, 20.1, 30], min_swing=2.0) == [(2, 5)]
    assert plateaus([0, 10, 20, 30], min_swing=2.0) == []
    assert plateaus([0, 10, 10.4, 10.8, 11.2, 11.6, 12.0, 30], min_swing=2.0) == [(1, 6)]  # a slow drift: one flat stretch
    assert smooth([0.0, 3.0, 0.0], [1.0, 1.0, 1.0], [0, 10, 20], 10) == [1.5, 1.0, 1.5]
    assert smooth([0.0, 3.0, 0.0], [1.0, 1e-3, 1.0], [0, 10, 20], 10)[1] == pytest.approx(3.0, abs=1e-4)  # a precise point keeps its value
    assert smooth([0.0, 3.0, 0.0], [1.0, 1.0, 1.0], [0, 10, 40], 10) == [1.5, 1.5, 0.0]  # no neighbour across a gap
