import json

import pytest
from cli_helper import run_cli as grokscope

from grokscope import build_config, train
from grokscope.thresholds import ESS_MIN


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    sets = {"p": 11, "train_frac": 0.7, "n_steps": 100, "n_checkpoints": 2, "embed_dim": 4, "hidden_size": 8}
    return train(build_config("example", overrides=sets), tmp_path_factory.mktemp("cli") / "run", progress=False).path


def test_llc_writes_json_and_figure(run_dir):
    result = grokscope("llc", str(run_dir), "--steps", "60", "--chains", "2", "--batch-size", "16", "--checkpoints", "0,-1", "--json")
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
    rec = report["recommended"]
    chosen = [c for c in report["cells"] if c["epsilon"] == rec["epsilon"]]
    assert len(chosen) == 1 and chosen[0]["healthy"] == rec["healthy"] and chosen[0]["flags"] == rec["flags"]
    assert all(c["healthy"] == (not c["flags"]) for c in report["cells"])
    assert (run_dir / "figures" / "calibration.png").exists()
    assert "chosen: epsilon=" in result.stdout and f"{rec['epsilon']:.3g}" in result.stdout


def test_llc_auto_records_the_evidence_and_the_report_draws_it(run_dir):
    result = grokscope("llc", str(run_dir), "--auto", "--steps", "80", "--chains", "2", "--batch-size", "16", "--checkpoints", "0,-1")
    assert result.returncode == 0, result.stderr
    stored = json.loads((run_dir / "results" / "llc.json").read_text())
    calibration = stored["settings"]["calibration"]
    assert stored["settings"]["epsilon"] == calibration["recommended"]["epsilon"]
    assert stored["settings"]["sampler"] == "sgld"  # AUTO_SAMPLER, as no --sampler was given
    assert calibration["checkpoint_id"] == stored["checkpoints"][-1]["step"]
    # 2 chains × 60 post-burn-in draws can never reach ESS_MIN: no cell is healthy, and every
    # estimate says so, with the least bad cell's ε
    assert 2 * 60 < ESS_MIN and not calibration["recommended"]["healthy"]
    assert any(flag.startswith("few effective draws") for flag in calibration["recommended"]["flags"])
    for entry in stored["checkpoints"]:
        assert entry["mala_acceptance"] is not None
        assert any(flag.startswith("auto: no healthy step size") for flag in entry["flags"]), entry["flags"]
    assert "chosen: epsilon=" in result.stdout
    report = grokscope("report", str(run_dir))
    assert report.returncode == 0, report.stderr
    page = (run_dir / "report.html").read_text()
    assert "--auto: chosen ε" in page and "health flags" in page


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


@pytest.mark.parametrize("spec, words", [("dln:5,3:9", "rank=9"), ("dln:5,x,5:1", "invalid literal"), ("nope:1", "use dln:WIDTHS:RANK"),
                                          ("crossing:0,0", "not both 0")])
def test_validate_refuses_a_bad_case_clearly(spec, words):
    result = grokscope("validate", "--case", spec, "--epsilon", "1e-6")
    assert result.returncode == 2 and words in result.stderr and "Traceback" not in result.stderr, result.stderr
