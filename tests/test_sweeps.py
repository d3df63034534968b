import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from browser import NO_CHROMIUM, check_page, chromium_available

from grokscope import ConfigError
from grokscope.layout import RunPaths, SweepPaths
from grokscope.llc import sgld_config
from grokscope.llc.api import run_llc
from grokscope.sweeps import (
    BUILTIN_SPECS,
    load_spec,
    parse_spec,
    run_sweep,
    sweep_points,
)
from grokscope.sweeps.fits import line_fits
from grokscope.sweeps.spec import work_units
from grokscope.sweeps.table import read_results
from grokscope.sweeps.work import TIMING_COLUMNS

POINT_FILE, RESULTS_FILE = RunPaths.sweep_point, SweepPaths.results

TINY = {
    "name": "tiny",
    "preset": "example",
    "set": {"n_steps": 120, "n_checkpoints": 3, "embed_dim": 6, "hidden_size": 16, "batch_size": 32},
    "grid": {"p": [7, 11, 13], "seed": [0, 1]},
    "llc": {"checkpoints": "all", "sgld": {"chains": 2, "n_steps": 120, "batch_size": 16, "epsilon": 1e-3}},
    "refine": ["components", "data:difference:2"],
    "analyses": True,
}


def _comparable(rows, also=()):
    """The table without its wall-clock columns (and ``also``)."""
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS + also} for row in rows]


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "local"
    outcome = run_sweep(parse_spec(TINY), out, executor="local", workers=2, progress=False)
    return outcome


def test_spec_expands_to_validated_points_grouped_by_shape():
    spec = load_spec("sweep-p")
    points = sweep_points(spec)
    assert len(points) == 6 * 2 * 3
    assert len({p.name for p in points}) == len(points)
    assert {p.config.task.p for p in points} == {17, 23, 29, 37, 43, 53}
    units = work_units(points, batch_seeds=True)
    assert [len(u) for u in units] == [6] * 6  # 3 seeds x {modular, random labels} per p
    assert all(len({p.config.task.p for p in u}) == 1 for u in units)
    assert [len(u) for u in work_units(points, batch_seeds=False)] == [1] * 36
    many_seeds = parse_spec({**TINY, "grid": {"p": [7], "seed": list(range(11))}})
    assert [len(u) for u in work_units(sweep_points(many_seeds), batch_seeds=True)] == [8, 3]
    # with more workers than groups, the largest units are halved so that no worker idles
    assert [len(u) for u in work_units(sweep_points(many_seeds), batch_seeds=True, min_units=2)] == [8, 3]
    assert [len(u) for u in work_units(sweep_points(many_seeds), batch_seeds=True, min_units=3)] == [4, 4, 3]
    assert [len(u) for u in work_units(points[:2], batch_seeds=True, min_units=4)] == [1, 1]
    assert len(sweep_points(load_spec("sweep-frac"))) == 7 * 3


@pytest.mark.parametrize(
    "change, message",
    [
        ({"grid": {"hidden": [1, 2]}}, "unknown config key 'hidden'"),
        ({"grid": {"p": []}}, "grid.p is an empty list"),
        ({"grid": {"p": [7, 7]}}, "repeats a value"),
        ({"grid": {"p": [1, 7]}}, r"sweep point \{'p': 1\}: invalid config: task.p=1"),
        ({"preset": "nope"}, "unknown preset 'nope'"),
        ({"llc": {"checkpoints": "some"}}, "llc.checkpoints='some'"),
        ({"llc": {"sgld": {"chains": 0}}}, "invalid SGLD setting: chains=0"),
        ({"llc": {"sgld": {"batch_size": 500}}}, r"SGLD batch_size=500 exceeds its 46 training pairs"),
        ({"colour": "red"}, "colour: unknown key"),
        ({"refine": ["weights"]}, "refine: 'weights': use components, data:trained, data:difference"),
        ({"llc": {"checkpoints": "none"}}, "refine needs llc.checkpoints last or all"),
        ({"refine": ["data:difference:7"]}, r"sweep point \{'p': 7, 'seed': 0\}: --refine data:difference:7: subsets .* fewer pairs than the minibatch \(16\)"),
    ],
)
def test_bad_specs_fail_with_one_clear_message(change, message):
    with pytest.raises(ConfigError, match=message):
        parse_spec({**TINY, **change})


def test_yaml_and_json_spec_files(tmp_path):
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(TINY))
    (tmp_path / "s.json").write_text(json.dumps(TINY))
    assert load_spec(tmp_path / "s.yaml") == load_spec(tmp_path / "s.json") == parse_spec(TINY)
    (tmp_path / "bad.yaml").write_text("grid: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_spec(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="sweep spec not found.*built-in specs: sweep-p, sweep-frac"):
        load_spec(tmp_path / "missing.yaml")


@pytest.mark.slow  # a whole sweep in worker processes
def test_local_sweep_writes_a_row_per_point_runs_and_figures(local_sweep):
    rows = read_results(local_sweep.path)
    assert [r["point"] for r in rows] == [p.name for p in sweep_points(parse_spec(TINY))]
    assert all(r["status"] == "done" and r["error"] == "" for r in rows)
    assert all(float(r["llc_mean"]) > 0 and r["verdict"] for r in rows)
    assert {r["batched"] for r in rows} == {"2"}  # the two seeds of each p ran together
    for row in rows:
        run_dir = local_sweep.path / row["run_dir"]
        assert (run_dir / "config.json").exists() and (run_dir / "results" / "llc.json").exists()
        llc = json.loads((run_dir / "results" / "llc.json").read_text())
        assert llc["checkpoints"][-1]["llc_mean"] == pytest.approx(float(row["llc_mean"]), rel=1e-6)
    assert (local_sweep.path / "figures" / "llc_vs_p.png").stat().st_size > 10_000
    assert (local_sweep.path / "figures" / "llc_over_training.png").exists()
    fits = json.loads((local_sweep.path / "fits.json").read_text())
    assert set(fits) == {"p"}


@pytest.mark.slow  # a whole sweep in worker processes
def test_refined_llcs_of_each_point_are_columns_of_the_table(local_sweep):
    rows = read_results(local_sweep.path)
    refined = [c for c in rows[0] if c.startswith(("wr_", "dr_"))]
    assert refined == ["wr_embedding", "wr_layer1", "wr_output", "dr_bin0", "dr_bin1", "dr_bins_cv"]
    for row in rows:
        stored = json.loads((local_sweep.path / row["run_dir"] / "results" / "llc_refined.json").read_text())
        assert set(stored) == {"components", "data:difference:2"}
        parts = stored["components"]["parts"]
        assert parts["whole"][-1]["llc_mean"] == pytest.approx(float(row["llc_mean"]), rel=1e-6)  # the same chains
        assert float(row["wr_layer1"]) == pytest.approx(parts["layer1"][-1]["llc_mean"], rel=1e-6)
        bins = [float(row["dr_bin0"]), float(row["dr_bin1"])]
        assert float(row["dr_bins_cv"]) == pytest.approx(abs(bins[0] - bins[1]) / 2**0.5 / (sum(bins) / 2), rel=1e-5)


def test_a_point_of_a_sweep_equals_the_same_run_trained_and_sampled_alone(local_sweep, tmp_path):
    from grokscope import train
    from grokscope.llc import sgld_config
    from grokscope.llc.api import run_llc

    point = sweep_points(parse_spec(TINY))[3]
    alone = train(point.config, tmp_path / "alone", progress=False)
    estimate = run_llc(alone, sgld_config(**TINY["llc"]["sgld"]), "all", progress=False)
    row = next(r for r in read_results(local_sweep.path) if r["point"] == point.name)
    assert float(row["final_test_loss"]) == pytest.approx(alone.metrics[-1]["test_loss"], rel=1e-7)
    assert float(row["llc_mean"]) == pytest.approx(estimate.entries[-1].llc_mean, rel=1e-7)


@pytest.mark.slow
def test_without_an_epsilon_each_run_of_a_unit_gets_the_rules_step_size(local_sweep):
    """A sweep whose spec gives no ε calibrates each run at its last checkpoint (its own ε, or
    none with the reason) and then samples the runs together: each equals its estimate alone."""
    from grokscope import load_run
    from grokscope.llc.tuning.auto import run_llc_together_auto

    runs = [load_run(local_sweep.path / row["run_dir"]) for row in local_sweep.rows[:2]]
    config = sgld_config(chains=2, n_steps=120, batch_size=16)
    together = run_llc_together_auto(runs, config, "last")
    for run, result in zip(runs, together):
        chosen = result.settings["calibration"]["recommended"]["epsilon"]
        assert result.settings["auto"] is True and result.settings["epsilon"] == chosen
        if chosen is None:
            assert all(e.status == "none" and e.llc_mean is None for e in result.entries)
            continue
        if result.settings["sampler"] == "preconditioned":  # plain SGLD passed none: the calibration's fallback
            from grokscope.llc.tuning.preconditioned import estimate_preconditioned

            data, steps = run.dataset(), [run.steps[-1]]
            alone = estimate_preconditioned(run.new_model(), (data.train_x, data.train_y), [run.state_dict(steps[0])], config,
                                            "cross_entropy", steps, steps, chosen)
        else:
            alone = run_llc(run, config.model_copy(update={"epsilon": chosen}), "last", progress=False)
        assert [e.llc_per_chain for e in result.entries] == [e.llc_per_chain for e in alone.entries]


@pytest.mark.slow
def test_ray_executor_gives_the_local_table_value_for_value(local_sweep, tmp_path):
    import ray  # installed by `make test` (the `ray` extra): this test never skips

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        outcome = run_sweep(parse_spec(TINY), tmp_path / "ray", executor="ray", progress=False)
    finally:
        ray.shutdown()
    assert outcome.ran == 6 and not outcome.failed
    assert _comparable(read_results(tmp_path / "ray")) == _comparable(read_results(local_sweep.path))


@pytest.mark.slow
def test_ray_executor_joins_an_existing_cluster_by_address(local_sweep, tmp_path):
    """A cluster started with `ray start --head` (as on a real machine), joined through --address."""
    import re
    import socket

    ray_cli = str(Path(sys.executable).with_name("ray"))
    with socket.socket() as probe:
        probe.bind(("", 0))
        port = probe.getsockname()[1]
    started = subprocess.run([ray_cli, "start", "--head", "--num-cpus", "2", "--port", str(port), "--include-dashboard=false",
                              "--disable-usage-stats"], capture_output=True, text=True)
    try:
        assert started.returncode == 0, started.stderr
        address = re.search(r"ray start --address='([^']+)'", started.stdout + started.stderr).group(1)
        spec_file = tmp_path / "tiny.yaml"
        spec_file.write_text(yaml.safe_dump(TINY))
        env = {**os.environ, "RAY_AUTH_MODE": "token"}  # `ray start` enables token authentication
        result = subprocess.run([sys.executable, "-m", "grokscope.cli", "sweep", str(spec_file), "--out", str(tmp_path / "cluster"),
                                 "--executor", "ray", "--address", address, "--quiet"], env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    finally:
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True)
    assert _comparable(read_results(tmp_path / "cluster")) == _comparable(read_results(local_sweep.path))


@pytest.mark.slow
def test_rerun_skips_finished_points_and_a_failed_point_does_not_stop_the_others(local_sweep, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(local_sweep.path, copy)
    again = run_sweep(parse_spec(TINY), copy, workers=2, progress=False)
    assert (again.reused, again.ran) == (6, 0)
    # Break one point: its last checkpoint is truncated and its record removed.
    broken = sweep_points(parse_spec(TINY))[2]
    run_dir = copy / "runs" / broken.name
    (run_dir / POINT_FILE).unlink()
    (run_dir / "results" / "llc.json").unlink()
    last = RunPaths(run_dir).checkpoint(120)
    last.write_bytes(last.read_bytes()[:100])
    outcome = run_sweep(parse_spec(TINY), copy, workers=2, progress=False)
    assert (outcome.reused, outcome.ran) == (5, 1)
    rows = read_results(copy)
    assert len(rows) == 6
    failed = [r for r in rows if r["status"] == "failed"]
    assert [r["point"] for r in failed] == [broken.name]
    assert "truncated" in failed[0]["error"] and str(last) in failed[0]["error"]
    assert all(r["status"] == "done" for r in rows if r["point"] != broken.name)


@pytest.mark.slow
def test_a_killed_sweep_completes_on_rerun_without_duplicates(local_sweep, tmp_path):
    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "grokscope.cli", "sweep", str(spec_file), "--out", str(out), "--workers", "1", "--quiet"]
    proc = subprocess.Popen(args, start_new_session=True)
    for _ in range(12000):  # up to about two minutes for the first unit to finish
        if list(out.glob(f"runs/*/{POINT_FILE}")) or proc.poll() is not None:
            break
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its worker processes, as a kill -9 of the job would
    proc.wait()
    finished = len(list(out.glob(f"runs/*/{POINT_FILE}")))
    assert 0 < finished < 6, "the sweep was not caught part-way"
    partial = read_results(out) if (out / RESULTS_FILE).exists() else []
    assert len(partial) == len({r["point"] for r in partial}) <= finished
    assert subprocess.run(args).returncode == 0
    rows = read_results(out)
    assert len({r["point"] for r in rows}) == len(rows) == 6
    # Points finished after the kill ran in smaller batches than before; every number is the same.
    assert _comparable(rows, ("batched",)) == _comparable(read_results(local_sweep.path), ("batched",))
    with open(out / RESULTS_FILE) as handle:
        assert len(list(csv.reader(handle))) == 7  # header + one row per point


def test_report_command_builds_the_sweep_page_for_a_sweep_directory(local_sweep):
    result = subprocess.run([sys.executable, "-m", "grokscope.cli", "report", str(local_sweep.path)], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == f"wrote {local_sweep.path / 'report.html'}"
    assert "grokscope sweep: local" in (local_sweep.path / "report.html").read_text()


def test_cli_reports_failures_and_bad_specs_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "grokscope.cli", "sweep", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "o")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("grokscope: error: sweep spec not found") and "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


def test_line_fit_recovers_an_exact_line_and_leaves_out_networks_that_did_not_generalise():
    rows = [
        {"status": "done", "p": p, "seed": s, "random_labels": False, "final_test_acc": 1.0, "llc_mean": 2.0 * p + 1 + s * 0.0}
        for p in (5, 7, 11) for s in (0, 1)
    ]
    rows.append({"status": "done", "p": 13, "seed": 0, "random_labels": False, "final_test_acc": 0.3, "llc_mean": 500.0})
    rows += [{"status": "done", "p": p, "seed": 0, "random_labels": True, "final_test_acc": 0.0, "llc_mean": p * p} for p in (5, 7, 11)]
    fits = {f.series: f for f in line_fits(rows, ["p", "random_labels", "seed"], "p")}
    modular = fits["random_labels=false"]
    assert modular.n_points == 6 and modular.slope == pytest.approx(2.0) and modular.r2 == pytest.approx(1.0)
    assert fits["random_labels=true"].n_points == 3 and fits["random_labels=true"].r2 < 1.0
    rows[0]["llc_status"], rows[1]["llc_status"] = "unreliable", "ok"  # rows without a status are not ok-only points
    ok_only = {f.series: f for f in line_fits(rows, ["p", "random_labels", "seed"], "p", ok_only=True)}
    assert ok_only == {} and rows[0]["p"] == rows[1]["p"]  # one ok point at one p: no line
    for row in rows[2:6]:
        row["llc_status"] = "ok"
    modular_ok = line_fits(rows, ["p", "random_labels", "seed"], "p", ok_only=True)[0]
    assert (modular_ok.n_points, modular_ok.points) == (5, "ok only") and modular_ok.slope == pytest.approx(2.0)


def test_builtin_specs_are_valid():
    for name in BUILTIN_SPECS:
        assert load_spec(name).name == name


def test_sweep_page_shows_table_fits_and_figures(local_sweep):
    from grokscope.report import build_sweep_report

    html = build_sweep_report(local_sweep.path).read_text()
    for point in sweep_points(parse_spec(TINY)):
        assert point.name in html
    assert "6 done, 0 failed, 0 not yet run" in html and "least-squares line" in html
    assert "wr_embedding" in html and "dr_bins_cv" in html and "components, data:difference:2" in html
    assert html.count("data:image/png;base64,") == 2 and "http://" not in html and "https://" not in html


@pytest.mark.browser
@pytest.mark.skipif(not chromium_available(), reason=NO_CHROMIUM)
def test_sweep_page_opens_in_chromium(local_sweep, tmp_path):
    from grokscope.report import build_sweep_report

    check = check_page(build_sweep_report(local_sweep.path), tmp_path / "sweep.png")
    assert check.images == check.images_decoded == 2 and check.console_errors == []


def test_sweep_page_names_missing_figures_and_points_not_yet_run(local_sweep, tmp_path):
    import shutil

    from grokscope.report import build_sweep_report

    copy = tmp_path / "copy"
    shutil.copytree(local_sweep.path, copy)
    (copy / "figures" / "llc_vs_p.png").unlink()
    lines = (copy / RESULTS_FILE).read_text().splitlines()
    (copy / RESULTS_FILE).write_text("\n".join(lines[:-1]) + "\n")
    html = build_sweep_report(copy).read_text()
    assert "missing: figures/llc_vs_p.png" in html
    assert "1 points not yet run" in html and "grokscope sweep" in html


def test_a_cut_short_results_table_is_named(local_sweep, tmp_path):
    import shutil

    from cli_helper import run_cli

    copy = tmp_path / "copy"
    shutil.copytree(local_sweep.path, copy)
    lines = (copy / RESULTS_FILE).read_text().splitlines()
    (copy / RESULTS_FILE).write_text("\n".join(lines[:-1] + [lines[-1].split(",", 3)[0]]) + "\n")  # a half-written row
    result = run_cli("report", copy)
    assert result.returncode == 2 and f"{copy / RESULTS_FILE}, line {len(lines)}" in result.stderr
    assert "Traceback" not in result.stderr
