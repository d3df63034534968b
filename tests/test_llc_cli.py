import json

import pytest
from cli_helper import run_cli as grokscope
from tiny import tiny_config

from grokscope import train
from grokscope.llc.diagnostics.health import status_line


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return train(tiny_config(n_steps=100, n_checkpoints=2), tmp_path_factory.mktemp("cli") / "run", progress=False).path


def test_llc_writes_json_and_figure(run_dir):
    result = grokscope("llc", str(run_dir), "--steps", "60", "--chains", "2", "--batch-size", "16", "--checkpoints", "0,-1", "--json",
                       "--no-auto")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    stored = json.loads((run_dir / "results" / "llc.json").read_text())
    assert printed == stored
    assert [c["step"] for c in stored["checkpoints"]] == [0, 100]
    assert stored["settings"]["n_steps"] == 60 and stored["settings"]["nbeta_convention"] == "n/ln n"
    png = (run_dir / "figures" / "llc.png").read_bytes()
    assert png.startswith(b"\x89PNG")


def test_llc_bad_input_is_one_line(run_dir):
    for args, text in [
        (["--epsilon", "0"], "epsilon"),
        (["--batch-size", "100000"], "exceeds"),
        (["--params", "zzz"], "matches no parameter"),
        (["--checkpoints", "9"], "out of range"),
        (["--steps", "10", "--burn-in", "10"], "burn_in"),
    ]:
        result = grokscope("llc", str(run_dir), *args)
        assert result.returncode == 2 and text in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)


def test_calibrate_brackets_then_prints_the_grid_and_the_choice(run_dir):
    result = grokscope("calibrate", str(run_dir), "--steps", "80", "--chains", "2", "--batch-size", "16")
    assert result.returncode == 0, result.stderr
    report = json.loads((run_dir / "results" / "calibration.json").read_text())
    bracket = report["bracket"]
    assert len(bracket["epsilons"]) == len(bracket["mala_acceptance"]) == 9
    assert sorted(c["epsilon"] for c in report["cells"]) == pytest.approx([bracket["epsilon"] * 2.0**j for j in range(-3, 4)])
    assert all(80 <= c["steps_used"] <= report["max_steps"] for c in report["cells"] if c["llc_mean"] is not None)
    rec = report["recommended"]
    if rec["epsilon"] is None:  # this barely trained network: the reason is printed, no number
        assert rec["llc_mean"] is None and f"chosen: none -- {rec['why']}" in result.stdout
    else:
        grid = report["preconditioned"]["cells"] if rec.get("sampler") == "preconditioned" else report["cells"]
        chosen = [c for c in grid if c["epsilon"] == rec["epsilon"]]
        assert len(chosen) == 1 and chosen[0]["settled"] and chosen[0]["flags"] == rec["flags"]
        assert "chosen: epsilon=" in result.stdout and f"{rec['epsilon']:.3g}" in result.stdout
    assert (run_dir / "figures" / "calibration.png").exists()


def test_llc_chooses_epsilon_by_default_and_the_report_shows_the_evidence(run_dir):
    result = grokscope("llc", str(run_dir), "--steps", "160", "--chains", "2", "--batch-size", "16", "--checkpoints", "0,-1")
    assert result.returncode == 0, result.stderr
    stored = json.loads((run_dir / "results" / "llc.json").read_text())
    settings, calibration = stored["settings"], stored["settings"]["calibration"]
    assert settings["auto"] is True and settings["sampler"] == "sgld"  # AUTO_SAMPLER, as no --sampler was given
    assert calibration["checkpoint_id"] == stored["checkpoints"][-1]["step"]
    chosen = calibration["recommended"]
    assert settings["epsilon"] == chosen["epsilon"] is not None and f"chosen: epsilon={chosen['epsilon']:.3g}" in result.stdout
    cell = next(c for c in calibration["cells"] if c["epsilon"] == chosen["epsilon"])
    assert cell["settled"] and not cell["biased"]
    statuses = [e["status"] for e in stored["checkpoints"]]
    assert all(s in ("ok", "imprecise", "unreliable", "none") for s in statuses)
    assert status_line(statuses) in result.stdout
    report = grokscope("report", str(run_dir))
    assert report.returncode == 0, report.stderr
    page = (run_dir / "report.html").read_text()
    assert f"--auto: chosen ε = {chosen['epsilon']:.3g}" in page and status_line(statuses) in page


def test_llc_says_none_when_no_step_size_passes(run_dir, monkeypatch, capsys):
    """When the rule passes no cell (its cases are in test_llc_calibrate.py), nothing is estimated and
    every entry says why: in llc.json, the command's output and the report."""
    import grokscope.llc.tuning.calibrate as calibrate
    from grokscope.cli import main

    rule = calibrate.recommend
    monkeypatch.setattr(calibrate, "recommend", lambda cells, nbeta, gamma, *hint: rule([], nbeta, gamma, *hint))  # every cell unsettled
    assert main(["llc", str(run_dir), "--steps", "40", "--chains", "2", "--batch-size", "16", "--checkpoints", "0,-1"]) == 0
    printed = capsys.readouterr().out
    stored = json.loads((run_dir / "results" / "llc.json").read_text())
    assert stored["settings"]["calibration"]["recommended"]["epsilon"] is None and stored["settings"]["epsilon"] is None
    for entry in stored["checkpoints"]:
        assert entry["llc_mean"] is None and entry["status"] == "none" and entry["flags"][0].startswith(("auto: no step size passes", "auto: plain SGLD: no step size passes"))
    assert "chosen: none" in printed and "2 of 2 estimates not ok (2 none)" in printed
    page = (grokscope("report", str(run_dir)), (run_dir / "report.html").read_text())[1]
    assert "--auto: chosen ε = none" in page and "2 of 2 estimates not ok (2 none)" in page


def test_explicit_epsilon_switches_auto_off_and_llc_json_says_so(run_dir):
    result = grokscope("llc", str(run_dir), "--steps", "40", "--chains", "2", "--batch-size", "16", "--checkpoints", "-1",
                       "--epsilon", "1e-4", "--max-steps", "40", "--start-spread", "0.05")
    assert result.returncode == 0, result.stderr
    settings = json.loads((run_dir / "results" / "llc.json").read_text())["settings"]
    assert settings["auto"] is False and settings["auto_off"] == "--epsilon was given" and "calibration" not in settings
    assert settings["start_spread"] == 0.05
    both = grokscope("llc", str(run_dir), "--epsilon", "1e-4", "--auto")
    assert both.returncode == 2 and "not both" in both.stderr


def test_llc_with_another_sampler_a_component_and_step_metrics(run_dir):
    result = grokscope("llc", str(run_dir), "--steps", "60", "--chains", "2", "--batch-size", "16", "--checkpoints", "-1",
                       "--sampler", "rmsprop_sgld", "--rmsprop-alpha", "0.9", "--epsilon", "1e-4", "--params", "layer1",
                       "--step-metrics", "--mala-every", "5")
    assert result.returncode == 0, result.stderr
    assert "sampler rmsprop_sgld" in result.stdout
    stored = json.loads((run_dir / "results" / "llc.json").read_text())
    settings, entry = stored["settings"], stored["checkpoints"][0]
    assert (settings["sampler"], settings["rmsprop_alpha"], settings["rmsprop_eps"]) == ("rmsprop_sgld", 0.9, 0.1)
    assert settings["selection"]["components"] == ["layer1"]
    assert settings["sampled_parameters"] == ["linear1l.weight", "linear1l.bias", "linear1r.weight", "linear1r.bias"]
    assert set(entry["step_metrics"]) == {"steps", "gradient", "localisation", "weight_decay", "noise", "distance"}
    assert 0 < entry["mala_acceptance"] <= 1

    from grokscope.report import build_run_report

    html = build_run_report(run_dir).read_text()
    assert "Sampler rmsprop_sgld (α = 0.9, eps = 0.1)" in html
    assert "Norms of each step&#39;s terms per chain" in html or "Norms of each step's terms per chain" in html


def test_unknown_sampler_or_component_lists_the_choices(run_dir):
    result = grokscope("llc", str(run_dir), "--sampler", "hmc")
    assert result.returncode == 2 and "sgld" in result.stderr and "rmsprop_sgld" in result.stderr
    result = grokscope("llc", str(run_dir), "--params", "head3")
    assert result.returncode == 2 and "'embedding', 'layer1', 'output'" in result.stderr and "Traceback" not in result.stderr
    result = grokscope("llc", str(run_dir), "--epsilon", "inf")
    assert result.returncode == 2 and "finite" in result.stderr and "Traceback" not in result.stderr


def test_validate_one_case_as_json_with_the_llc_flags():
    result = grokscope("validate", "--case", "dln:2,1,2:1", "--epsilon", "1e-6", "--steps", "200", "--chains", "2", "--json")
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)
    assert set(row) >= {"true", "estimate", "std", "relative_error", "settings", "flags"}
    assert row["true"] == 1.5 and row["settings"]["epsilon"] == 1e-6 and row["settings"]["n_steps"] == 200
    assert row["relative_error"] == pytest.approx((row["estimate"] - 1.5) / 1.5)
    assert row["notes"] == [] and row["resolved_truth"] is None and row["direction_energies"][0] > 10  # its one direction is resolved


def test_validate_says_when_the_data_do_not_resolve_a_teachers_direction():
    result = grokscope("validate", "--case", "dln:12,6,12,2,12:2", "--epsilon", "1e-7", "--steps", "100", "--chains", "2")
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("DLN [12, 6, 12, 2, 12] r2"))
    assert "lies between λ 22 and 14" in line


@pytest.mark.parametrize("spec, words", [("dln:5,3:9", "rank=9"), ("dln:5,x,5:1", "invalid literal"), ("nope:1", "use dln:WIDTHS:RANK"),
                                          ("crossing:0,0", "not both 0")])
def test_validate_refuses_a_bad_case_clearly(spec, words):
    result = grokscope("validate", "--case", spec, "--epsilon", "1e-6")
    assert result.returncode == 2 and words in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_llc_saves_draws_that_arviz_reads_and_a_new_estimate_replaces_them(run_dir):
    az = pytest.importorskip("arviz")
    pytest.importorskip("h5netcdf")
    draws = run_dir / "results" / "draws"
    common = ["--steps", "60", "--chains", "2", "--batch-size", "16", "--no-auto"]
    result = grokscope("llc", str(run_dir), *common, "--checkpoints", "0,-1", "--save-draws")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in draws.iterdir()) == ["draws-0.nc", "draws-100.nc"]
    stored = json.loads((run_dir / "results" / "llc.json").read_text())["checkpoints"][1]
    back = az.from_netcdf(draws / "draws-100.nc")
    assert back.posterior["llc"].shape == (2, stored["steps_used"] - stored["burn_in"])
    assert float(back.posterior["llc"].mean()) == pytest.approx(stored["llc_mean"], rel=1e-6)
    assert grokscope("llc", str(run_dir), *common, "--checkpoints", "-1").returncode == 0
    assert not list(draws.iterdir())  # the draws of the estimate just replaced are gone
