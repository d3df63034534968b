"""Nothing crashes on its own output: each case found by trying the tool as a new user would gets a
one-line error naming the file or field, or a flagged result, and never a half-made directory."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from cli_helper import run_cli

from grokscope import CheckpointError, train
from grokscope.layout import RunPaths
from grokscope.llc import estimate_llc, sgld_config
from grokscope.store import save_tensors


def one_line_error(result, *texts):
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.startswith("grokscope: error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for text in texts:
        assert text in lines[0], (text, lines[0])


@pytest.fixture
def run(tmp_path, tiny_config):
    return train(tiny_config(), tmp_path / "run", progress=False)


def _interrupted(tmp_path, tiny_config, keep=30):
    """A run directory as a kill after step ``keep``'s checkpoint leaves it."""
    config = tiny_config()
    run_dir = tmp_path / "interrupted"
    train(config, run_dir, progress=False)
    shorter = config.model_copy(update={"training": config.training.model_copy(update={"n_steps": keep, "n_checkpoints": 2})})
    partial = train(shorter, tmp_path / "partial", progress=False)
    paths = RunPaths(run_dir)
    paths.resume.write_bytes(RunPaths(partial.path).resume.read_bytes())
    paths.metrics.write_text(RunPaths(partial.path).metrics.read_text())
    for step in config.training.checkpoint_steps():
        if step > keep:
            paths.checkpoint(step).unlink()
    paths.manifest.write_text(paths.manifest.read_text().replace('"complete": true', '"complete": false'))
    return config, run_dir


# 1. non-finite weights: a flagged result, and analyze and report still work


def test_non_finite_weights_are_flagged_by_llc_analyze_and_report(run):
    last = run.steps[-1]
    weights = run.state_dict(last)
    weights["linear2.weight"][0, 0] = float("nan")
    save_tensors(run.paths.checkpoint(last), weights)
    result = run_cli("llc", run.path, "--steps", "30", "--batch-size", "8", "--chains", "2", "--no-auto")
    assert result.returncode == 0, result.stderr
    entry = json.loads(run.paths.llc.read_text())["checkpoints"][-1]
    assert entry["llc_mean"] is None and entry["reason"].startswith(f"non-finite weights at step {last}")
    assert json.loads(run.paths.llc.read_text())["checkpoints"][0]["llc_mean"] is not None  # the others are sampled
    assert run_cli("analyze", run.path, "--quiet").returncode == 0
    circuit = json.loads(run.paths.circuit.read_text())
    assert circuit["checkpoints"][-1]["verdict"] == "unclear" and "non-finite weights: no circuit" in circuit["checkpoints"][-1]["notes"]
    assert run_cli("report", run.path).returncode == 0
    html = run.paths.report.read_text()
    assert f"non-finite weights at step {last}" in html and "unexpected structure" not in html


def test_auto_calibrates_at_the_last_finite_checkpoint_when_the_last_is_not(run):
    """A diverged last checkpoint has no posterior: the rule calibrates at the one before it, and
    never calls a cell of non-finite chains settled."""
    model, data = run.new_model(), run.dataset()
    params = [run.state_dict(s) for s in run.steps]
    params[-1]["linear2.weight"][0, 0] = float("nan")
    result = estimate_llc(model, (data.train_x, data.train_y), params, checkpoint_ids=run.steps, epsilon="auto",
                          n_steps=30, batch_size=8, chains=2)
    calibration = result.settings["calibration"]
    assert calibration["checkpoint_id"] == run.steps[-2]
    assert all(c["llc_mean"] is not None for c in calibration["cells"] if c["settled"])
    assert result.entries[-1].status == "none" and "non-finite weights" in result.entries[-1].reason


@pytest.mark.parametrize("frozen", [["--epsilon", "1e-12"], ["--sampler", "rmsprop_sgld", "--rmsprop-eps", "1e30"]])
def test_chains_that_never_moved_are_not_ok(run, frozen):
    """A step too small (or a preconditioner that makes it so): the chains stay at w*, λ̂ is
    minibatch noise around 0, and the status says so."""
    result = run_cli("llc", run.path, "--steps", "40", "--batch-size", "8", "--chains", "2", "--checkpoints", "-1",
                     *frozen, "--json")
    assert result.returncode == 0, result.stderr
    entry = json.loads(result.stdout)["checkpoints"][0]
    assert entry["status"] != "ok"
    if entry["status"] == "none":  # the rule tried every step size: each one's chains stood still
        cells = json.loads(result.stdout)["settings"]["calibration"]["cells"]
        assert all(any(f.startswith("chains did not move") for f in cell["flags"]) for cell in cells)
        assert "more steps" not in entry["flags"][0]
    else:
        assert entry["status"] == "unreliable" and any(f.startswith("chains did not move") for f in entry["flags"])


def test_a_non_finite_set_does_not_change_the_others(run):
    model, data = run.new_model(), run.dataset()
    params = [run.state_dict(s) for s in run.steps]
    settings = dict(n_steps=30, batch_size=8, chains=2)
    clean = estimate_llc(model, (data.train_x, data.train_y), params, **settings)
    params[1]["embedding.weight"][0, 0] = float("inf")
    flagged = estimate_llc(model, (data.train_x, data.train_y), params, **settings)
    assert flagged.entries[1].llc_mean is None and "non-finite weights" in flagged.entries[1].reason
    for k in (0, 2, 3):
        assert flagged.entries[k].llc_per_chain == clean.entries[k].llc_per_chain
    json.loads(flagged.to_json())


# 2. non-finite settings are refused before any work


@pytest.mark.parametrize("flag, value", [("--epsilon", "inf"), ("--gamma", "inf"), ("--weight-decay", "inf"),
                                         ("--nbeta", "inf"), ("--nbeta", "nan")])
def test_non_finite_sgld_settings_are_refused(run, flag, value):
    one_line_error(run_cli("llc", run.path, flag, value), "finite")
    assert not run.paths.llc.exists()


@pytest.mark.parametrize("setting, field", [("lr=1e999", "training.lr"), ("scale_embed=Infinity", "model.scale_embed"),
                                            ("weight_decay=NaN", "training.weight_decay"), ("betas=[0.9, 1.5]", "training.betas"),
                                            ("p=2", "task.p")])
def test_non_finite_or_out_of_range_training_settings_are_refused(tmp_path, setting, field):
    one_line_error(run_cli("train", "--set", setting, "--out", tmp_path / "r"), field)
    assert not (tmp_path / "r").exists()


# 3. memory: estimated first, then split or refused


def test_sets_that_do_not_fit_together_are_split_with_the_same_numbers(run, monkeypatch):
    import grokscope.llc.estimator as estimator

    model, data = run.new_model(), run.dataset()
    params = [run.state_dict(s) for s in run.steps]
    settings = dict(n_steps=30, max_steps=30, batch_size=8, chains=2, save_samples=2)
    whole = estimate_llc(model, (data.train_x, data.train_y), params, **settings)
    loops = []
    monkeypatch.setattr(estimator, "cpu_workers", lambda device: 1)  # one group a batch: the memory split alone
    monkeypatch.setattr(estimator._Job, "bytes_per_set", lambda self, n: 1e6)
    monkeypatch.setattr(estimator, "available_bytes", lambda device: 2.5e6 / estimator.USABLE_FRACTION)  # two sets a batch
    real_run_chains = estimator.run_chains
    monkeypatch.setattr(estimator, "run_chains", lambda *a, **k: loops.append(len(a[6].keys)) or real_run_chains(*a, **k))
    split = estimate_llc(model, (data.train_x, data.train_y), params, **settings)
    assert len(params) == 5 and loops == [4, 4, 2]  # 5 parameter sets x 2 chains, two sets a batch
    assert [e.llc_per_chain for e in split.entries] == [e.llc_per_chain for e in whole.entries]
    assert torch.equal(split.samples, whole.samples)


def test_chains_that_cannot_fit_are_refused_with_the_estimate(run, monkeypatch):
    import grokscope.llc.estimator as estimator

    monkeypatch.setattr(estimator, "available_bytes", lambda device: 1e5)
    one_line_error(run_cli("llc", run.path, "--chains", "2000"), "GB of memory", "lower --chains")


def test_a_training_too_big_for_memory_is_refused_before_writing(tmp_path):
    one_line_error(run_cli("train", "--set", "p=2000", "--out", tmp_path / "big"), "GB of memory", "lower p")
    assert not (tmp_path / "big").exists()


# 4. resume checks what it resumes


def test_resume_with_metrics_deleted_is_refused(tmp_path, tiny_config):
    config, run_dir = _interrupted(tmp_path, tiny_config)
    RunPaths(run_dir).metrics.unlink()
    with pytest.raises(CheckpointError, match="metrics.csv lacks the rows of steps 0–30"):
        train(config, run_dir, progress=False)


def test_resume_with_a_truncated_earlier_checkpoint_is_refused(tmp_path, tiny_config):
    config, run_dir = _interrupted(tmp_path, tiny_config)
    path = RunPaths(run_dir).checkpoint(15)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=f"{path}.*truncated"):
        train(config, run_dir, progress=False)


def test_resume_without_state_restarts_without_duplicate_rows(tmp_path, tiny_config):
    config, run_dir = _interrupted(tmp_path, tiny_config)
    reference = train(config, tmp_path / "reference", progress=False)
    import shutil

    shutil.rmtree(RunPaths(run_dir).resume.parent)
    resumed = train(config, run_dir, progress=False)
    steps = [int(r["step"]) for r in resumed.metrics]
    assert steps == sorted(set(steps)) == [int(r["step"]) for r in reference.metrics]
    assert all(torch.equal(resumed.state_dict(resumed.steps[-1])[k], v) for k, v in reference.state_dict(reference.steps[-1]).items())


def test_a_complete_run_without_its_checkpoints_is_refused(run):
    import shutil

    shutil.rmtree(run.paths.checkpoints)
    one_line_error(run_cli("train", "--out", run.path, "--preset", "example", *_sets(run)), "marked complete", "checkpoints are missing or not files")


def test_a_complete_run_with_a_checkpoint_replaced_by_a_directory_is_refused(run, tiny_config):
    path = run.paths.checkpoint(run.steps[-1])
    path.unlink()
    path.mkdir()
    with pytest.raises(CheckpointError, match="missing or not files"):
        train(tiny_config(), run.path, progress=False)


def test_a_finished_run_rerun_says_so(run):
    result = run_cli("train", "--out", run.path, "--preset", "example", *_sets(run))
    assert result.returncode == 0 and "already complete" in result.stdout


def _sets(run):
    return [f"--set={s}.{k}={json.dumps(v)}" for s in ("task", "model", "training")
            for k, v in getattr(run.config, s).model_dump().items()]


# 5. bad files are named, not tracebacks


@pytest.mark.parametrize("content", ["garbage\nnot,a,table\n", "step,train_loss,test_loss,train_acc,test_acc\n0,1.0,2.0\n",
                                     "step,train_loss,test_loss,train_acc,test_acc\n0,x,2.0,0.5,0.5\n"])
def test_a_damaged_metrics_file_is_named_by_every_command(run, content):
    run.paths.metrics.write_text(content)
    for args in (["llc", run.path, "--steps", "20", "--batch-size", "8"], ["analyze", run.path, "--quiet"],
                 ["train", "--out", run.path, "--preset", "example", *_sets(run)]):
        one_line_error(run_cli(*args), "metrics.csv")
    assert run_cli("report", run.path).returncode == 0
    assert "unreadable: metrics.csv" in run.paths.report.read_text()


@pytest.mark.parametrize("content", [b"\x89\xff\xfe binary", b"[1, 2, 3]"])
def test_a_damaged_config_is_named(run, content):
    run.paths.config.write_bytes(content)
    one_line_error(run_cli("llc", run.path), "config.json")


def test_results_of_the_wrong_structure_are_named_in_the_report(run):
    run.paths.llc.parent.mkdir(parents=True, exist_ok=True)
    run.paths.llc.write_text(json.dumps({"settings": [], "checkpoints": [{"step": 1}]}))
    run.paths.circuit.write_text(json.dumps([1, 2]))
    assert run_cli("report", run.path).returncode == 0
    html = run.paths.report.read_text()
    assert "unreadable: results/llc.json has an unexpected structure" in html
    assert "unreadable: results/circuit.json has an unexpected structure" in html


def test_a_resume_file_missing_a_key_is_named(tmp_path, tiny_config):
    from safetensors.torch import load_file, save_file

    config, run_dir = _interrupted(tmp_path, tiny_config)
    path = RunPaths(run_dir).resume
    tensors = load_file(path)
    del tensors["rng.batches"]
    save_file(tensors, path, metadata={"step": "30"})
    with pytest.raises(CheckpointError, match=f"{path} lacks \\['rng.batches'\\]"):
        train(config, run_dir, progress=False)


def test_bad_paths_and_encodings_are_named(tmp_path):
    (tmp_path / "latin1.json").write_bytes('{"p": "\xe9"}'.encode("latin-1"))
    one_line_error(run_cli("train", "--config", tmp_path / "latin1.json", "--out", tmp_path / "a"), "latin1.json", "UTF-8")
    one_line_error(run_cli("train", "--config", tmp_path, "--out", tmp_path / "b"), "is a directory")
    (tmp_path / "file").write_text("x")
    one_line_error(run_cli("train", "--out", tmp_path / "file"), "is a file")
    one_line_error(run_cli("train", "--out", tmp_path / "file" / "run"), "is a file")
    (tmp_path / "spec.yaml").write_bytes(b"name: \xff\xfe")
    one_line_error(run_cli("sweep", tmp_path / "spec.yaml", "--out", tmp_path / "s"), "spec.yaml", "UTF-8")
    (tmp_path / "params.json").write_bytes(b"\xff")
    one_line_error(run_cli("import-legacy", tmp_path / "params.json", tmp_path, "--out", tmp_path / "l"), "params.json")
    for name in ("a", "b", "s", "l"):
        assert not (tmp_path / name).exists()


# 6. a checkpoint whose dtype was changed


def test_a_checkpoint_with_another_dtype_is_refused(run):
    weights = {k: v.to(torch.int32) for k, v in run.state_dict(run.steps[-1]).items()}
    save_tensors(run.paths.checkpoint(run.steps[-1]), weights)
    with pytest.raises(CheckpointError, match="stored as torch.int32, expected float32"):
        run.state_dict(run.steps[-1])


# 7. checks run before anything is written; the corrected rerun is accepted


def test_an_empty_split_writes_nothing_and_the_corrected_rerun_trains(tmp_path, tiny_config):
    one_line_error(run_cli("train", "--set", "train_frac=0.001", "--set", "p=11", "--out", tmp_path / "r"), "training")
    assert not (tmp_path / "r").exists()
    train(tiny_config(), tmp_path / "r", progress=False)


# 8. a killed sweep leaves no live worker


@pytest.mark.slow
def test_sweep_workers_exit_when_the_sweep_is_killed(tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"name": "k", "preset": "example", "set": {"n_steps": 4000, "p": 23, "n_checkpoints": 2},
                                "grid": {"seed": [0, 1]}, "llc": {"checkpoints": "none"}, "analyses": False}))
    proc = subprocess.Popen([sys.executable, "-m", "grokscope.cli", "sweep", str(spec), "--out", str(tmp_path / "s"),
                             "--workers", "2", "--quiet"])
    workers = []
    for _ in range(600):
        workers = _children(proc.pid)
        if len(workers) >= 2:
            break
        time.sleep(0.05)
    assert workers, "no worker started"
    proc.send_signal(signal.SIGKILL)  # the sweep process only: nothing can tell its workers
    proc.wait()
    for _ in range(600):  # wait (up to a generous minute) for the workers to notice and exit
        if not any(_alive(pid) for pid in workers):
            break
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers)


def _children(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent and "resource_tracker" not in open(f"/proc/{entry}/cmdline").read():
                found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# 9. a huge grid is refused at once


def test_a_huge_grid_is_refused_before_validation(tmp_path, monkeypatch):
    import grokscope.sweeps.spec as spec_module

    validated = []
    real_build = spec_module.build_config
    monkeypatch.setattr(spec_module, "build_config", lambda *a, **k: validated.append(1) or real_build(*a, **k))
    spec = tmp_path / "huge.json"
    spec.write_text(json.dumps({"name": "h", "preset": "example", "grid": {"p": list(range(3, 803)), "seed": list(range(800))}}))
    one_line_error(run_cli("sweep", spec, "--out", tmp_path / "s"), "640,000 points")
    assert validated == [] and not (tmp_path / "s").exists()  # refused before a single point was built


# 10. samples of an earlier estimate are not shown beside later results


def test_a_later_llc_without_samples_removes_the_earlier_samples(run):
    assert run_cli("llc", run.path, "--steps", "20", "--batch-size", "8", "--save-samples", "3", "--no-auto").returncode == 0
    assert run.paths.llc_samples.exists()
    assert run_cli("llc", run.path, "--steps", "20", "--batch-size", "8", "--no-auto").returncode == 0
    assert not run.paths.llc_samples.exists()
    run_cli("report", run.path)
    assert "missing: results/llc_samples.safetensors" in run.paths.report.read_text()


# 11. wording


def test_interrupting_llc_says_it_restarts_and_train_says_it_resumes(run, monkeypatch):
    import grokscope.llc.api as api
    import grokscope.training as training

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "run_llc", interrupt)
    result = run_cli("llc", run.path)
    assert result.returncode == 130 and "does not resume" in result.stderr and "to resume" not in result.stderr
    monkeypatch.setattr(training, "train", interrupt)
    result = run_cli("train", "--out", run.path.parent / "other")
    assert result.returncode == 130 and "rerun the same command to resume" in result.stderr


class Payload:
    """An object a state_dict should not hold."""


def test_interrupting_while_torch_loads_is_one_line():
    interrupt_in_parser = ("import sys, grokscope.cli as cli\n"
                           "def interrupted():\n    raise KeyboardInterrupt\n"
                           "cli.build_parser = interrupted\nsys.argv = ['grokscope', 'llc', 'run']\ncli.run()")
    result = subprocess.run([sys.executable, "-c", interrupt_in_parser], capture_output=True, text=True, timeout=120)
    assert result.returncode == 130 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip() == "grokscope: interrupted before the command started; nothing was written"


def test_the_legacy_refusal_never_suggests_unsafe_loading(tmp_path):
    from grokscope.legacy import _load_legacy_state_dict

    torch.save({"w": torch.zeros(2), "x": Payload()}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as info:
        _load_legacy_state_dict(tmp_path / "bad.pt")
    assert "pickled Python objects" in str(info.value) and "weights_only" not in str(info.value)


def test_the_manifest_records_the_command_that_made_the_run(tmp_path, tiny_config):
    api = train(tiny_config(), tmp_path / "api", progress=False)
    assert json.loads(api.paths.manifest.read_text())["command"] == "grokscope.train() (Python API)"
    run_cli("train", "--set", "n_steps=20", "--set", "p=11", "--set", "n_checkpoints=2", "--out", tmp_path / "cli")
    assert json.loads(RunPaths(tmp_path / "cli").manifest.read_text())["command"].startswith("grokscope train --set n_steps=20")


# hostile run directories: the report embeds nothing from outside the run, and quotes the paths it suggests


def test_the_report_does_not_embed_a_figure_that_leads_outside_the_run(run, tmp_path):
    import base64

    from grokscope.llc.api import run_llc
    from grokscope.llc.runs.checkpoints import save_llc
    from grokscope.report import build_run_report

    save_llc(run, run_llc(run, sgld_config(n_steps=20, max_steps=20, batch_size=8, chains=2), "last", progress=False))
    secret = tmp_path / "elsewhere.png"
    secret.write_bytes(b"\x89PNG\r\n\x1a\n" + b"private bytes " * 20)
    figure = run.paths.figure("llc")
    figure.unlink()
    figure.symlink_to(secret)
    html = build_run_report(run.path).read_text()
    assert base64.b64encode(secret.read_bytes()).decode() not in html
    assert "refused: figures/llc.png is not a regular file inside the run" in html


def test_suggested_commands_quote_a_crafted_run_path(tmp_path, tiny_config):
    import markupsafe

    from grokscope.report import build_run_report
    from grokscope.report.page import command

    crafted = train(tiny_config(), tmp_path / "run $(touch PWNED); x`id`", progress=False)
    html = build_run_report(crafted.path).read_text()
    quoted = command("grokscope", "llc", crafted.path)
    assert quoted.startswith("grokscope llc '") and str(markupsafe.escape(quoted)) in html
    assert f"grokscope llc {crafted.path}`" not in html


# hostile sweep specs: refused in one short line, before they can grow


@pytest.mark.parametrize("name, text, message", [
    ("bomb.yaml", "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
     + "".join(f"{b}: &{b} [{', '.join(['*' + a] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi")), "anchors and aliases"),
    ("deep.json", "[" * 100_000 + "]" * 100_000, "nests deeper than a spec can"),
    ("deep.yaml", "a:\n" + "".join("  " * i + "b:\n" for i in range(1, 30)), "nesting deeper than"),
    ("huge.json", json.dumps({"name": "x", "grid": {"p": [7]}, "set": {"n_steps": "x" * 2_000_000}}), "a spec is at most"),
    ("long.json", json.dumps({"name": "x", "grid": {"p": [7]}, "set": {"n_steps": "x" * 500_000}}), "valid integer"),
])
def test_hostile_specs_are_refused_in_one_short_line(tmp_path, name, text, message):
    spec = tmp_path / name
    spec.write_text(text)
    result = run_cli("sweep", spec, "--out", tmp_path / "out")  # the bomb, loaded, would be gigabytes
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr) < 600 and not (tmp_path / "out").exists()


# unbounded reads: devices, FIFOs and directories are refused by type, before a byte is read


@pytest.mark.parametrize("target", ["config", "checkpoint", "metrics"])
@pytest.mark.parametrize("kind", ["/dev/zero", "fifo", "directory"])
def test_a_run_file_that_is_a_device_fifo_or_directory_is_refused_in_one_line(run, target, kind):
    path = {"config": run.paths.config, "checkpoint": run.paths.checkpoint(run.steps[-1]), "metrics": run.paths.metrics}[target]
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        path.symlink_to(kind)
    result = run_cli("llc", run.path, "--steps", "20", "--batch-size", "8", "--chains", "2", "--no-auto")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    refusal = {"fifo": "not a regular file", "directory": "is a directory", "/dev/zero": "leads outside"}[kind]
    assert str(path) in result.stderr and refusal in result.stderr


@pytest.mark.parametrize("target", ["config", "checkpoint", "metrics", "llc"])
def test_a_run_file_that_leads_outside_the_run_is_refused_in_one_line(run, tmp_path, target):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    if target == "llc":
        assert run_cli("llc", run.path, "--steps", "20", "--batch-size", "8", "--chains", "2", "--no-auto").returncode == 0
    path = {"config": run.paths.config, "checkpoint": run.paths.checkpoint(run.steps[-1]), "metrics": run.paths.metrics,
            "llc": run.paths.llc}[target]
    copy = outside / path.name
    copy.write_bytes(path.read_bytes())  # a well-formed file: only where it lies is wrong
    path.unlink()
    path.symlink_to(copy)
    command = ["stages", run.path] if target == "llc" else ["llc", run.path, "--steps", "20", "--chains", "2", "--no-auto"]
    one_line_error(run_cli(*command), str(path), "leads outside")


def test_a_run_directory_reached_through_a_symlink_still_reads(run, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(run.path)
    assert run_cli("llc", link, "--steps", "20", "--batch-size", "8", "--chains", "2", "--no-auto").returncode == 0


@pytest.mark.slow  # two real processes, one killed
def test_a_second_llc_process_on_a_run_is_refused_while_the_first_samples(run):
    slow = [sys.executable, "-m", "grokscope", "llc", str(run.path), "--steps", "200000", "--chains", "2", "--no-auto"]
    first = subprocess.Popen(slow, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (run.paths.lock.exists() and run.paths.lock.read_text().strip() == str(first.pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        second = subprocess.run(slow[:5] + ["--steps", "20", "--no-auto"], capture_output=True, text=True, timeout=120)
        assert first.poll() is None, first.stderr.read()  # still sampling: the lock was held
        one_line_error(second, f"PID {first.pid}")
    finally:
        first.kill()  # the OS releases the lock of a killed holder
        first.wait(timeout=60)
    assert run_cli("llc", run.path, "--steps", "20", "--chains", "2", "--no-auto").returncode == 0  # released


def test_a_request_predicted_to_be_long_says_so_after_its_first_steps(run, monkeypatch):
    import grokscope.llc.sampling.loop as sampler

    quick = ["llc", run.path, "--steps", "40", "--batch-size", "8", "--chains", "2", "--no-auto"]
    assert "will take about" not in run_cli(*quick).stderr
    monkeypatch.setattr(sampler, "LONG_RUN_SECONDS", 0)
    said = [line for line in run_cli(*quick).stderr.splitlines() if "will take about" in line]
    assert said and "these 40 steps" in said[0] and all("timed on the first 4 steps" in line for line in said)  # one a block


def test_a_second_writer_of_a_run_is_refused_naming_the_holder(run):
    from grokscope.store import RunLock

    with RunLock(run.path):
        for command in (["llc", run.path, "--steps", "20", "--no-auto"], ["analyze", run.path, "--quiet"], ["stages", run.path],
                        ["calibrate", run.path, "--steps", "20"], ["report", run.path]):
            result = run_cli(*command)
            assert result.returncode == 2 and f"being written by another process (PID {os.getpid()})" in result.stderr, command
    assert run_cli("report", run.path).returncode == 0  # released


@pytest.mark.parametrize("case", ["regular:0", "dln:5,0,5:0", "dln:0,0:0", "dln:5:0"])
def test_impossible_validation_cases_are_one_line(case):
    result = run_cli("validate", "--case", case, "--steps", "20")
    assert result.returncode == 2 and f"--case {case!r}" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("stored", ['{"checkpoints": 5}', "[1, 2]", '{"checkpoints": [{"x": 1}]}'])
def test_stages_and_analyze_name_an_llc_json_of_the_wrong_shape(run, stored):
    run.paths.llc.parent.mkdir(parents=True, exist_ok=True)
    run.paths.llc.write_text(stored)
    stages = run_cli("stages", run.path)
    assert stages.returncode == 2 and "has an unexpected structure" in stages.stderr and "Traceback" not in stages.stderr
    analyze = run_cli("analyze", run.path, "--quiet")
    assert analyze.returncode == 0 and "has an unexpected structure" in analyze.stdout + analyze.stderr


def test_a_new_llc_curve_removes_the_stages_found_from_the_old_one(run):
    from grokscope.analysis import save_stages
    from grokscope.llc.api import run_llc
    from grokscope.llc.runs.checkpoints import save_llc

    config = sgld_config(n_steps=20, max_steps=20, batch_size=8, chains=2)
    save_llc(run, run_llc(run, config, "all", progress=False))
    save_stages(run)
    assert run.paths.stages.exists()
    save_llc(run, run_llc(run, config.model_copy(update={"seed": 1}), "all", progress=False))
    assert not run.paths.stages.exists() and not run.paths.figure("stages").exists()


def test_a_bad_auto_at_is_named_as_such(run):
    result = run_cli("llc", run.path, "--auto-at", "99")
    assert result.returncode == 2 and "--auto-at: indices [99] out of range" in result.stderr


def test_a_short_row_of_a_table_is_named_with_its_real_cell_count(tmp_path):
    from grokscope.store import read_csv_rows

    table = tmp_path / "results.csv"
    table.write_text("point,status,a,b\nx,done,1\n")
    with pytest.raises(CheckpointError, match="line 2: 3 cells where the header has 4"):
        read_csv_rows(table, ["point", "status"])


def test_a_learning_rate_that_trains_to_a_non_finite_loss_stops_and_records_where(tmp_path, tiny_config):
    out = tmp_path / "nan"
    result = run_cli("train", "--preset", "example", "--set", "lr=1e30", "--set", "n_steps=40", "--set", "p=11",
                     "--set", "hidden_size=8", "--set", "embed_dim=4", "--out", out, "--quiet")
    assert result.returncode == 2 and "training diverged" in result.stderr and "Traceback" not in result.stderr
    manifest = json.loads(RunPaths(out).manifest.read_text())
    assert manifest["complete"] is False and f"step {manifest['diverged_at_step']}" in result.stderr


def test_every_registered_model_states_its_memory_estimate(tiny_config):
    from grokscope.memory import training_bytes
    from grokscope.models import MODELS

    for kind, (config_class, _) in MODELS.items():
        config = tiny_config().model_copy(update={"model": config_class()})
        width = config_class().activation_width()
        assert width > 0 and training_bytes(config) == 3 * 4 * 11 * 11 * (11 + width), kind


def test_memory_is_budgeted_under_an_address_space_limit(tmp_path):
    """Under `ulimit -v` the memory estimate sees the limit, not the machine's free memory (the
    refusal itself, with the flag that helps, is tested above)."""
    script = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30));"
              "from grokscope.memory import available_bytes; print(available_bytes())")
    limited = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert int(limited.stdout) < 3 << 30


# write before you compute: a place results cannot go is named before any sampling or training


def test_results_that_cannot_be_written_are_refused_before_sampling(run, monkeypatch):
    import grokscope.llc.api as api

    monkeypatch.setattr(api, "run_llc", lambda *a, **k: pytest.fail("sampled before checking the output"))
    run.paths.llc.parent.mkdir(parents=True, exist_ok=True)
    run.paths.llc.mkdir()
    result = run_cli("llc", run.path, "--steps", "20", "--no-auto")
    assert result.returncode == 2 and "is a directory where a file must be written" in result.stderr


@pytest.mark.parametrize("out, message", [("/proc/nonexist/run", "--out "), ("x" * 300, "a file name over 255 bytes"),
                                          ("/".join(["d" * 200] * 25), "a path over 4096")])
def test_an_out_directory_that_cannot_be_written_is_one_line(tmp_path, out, message):
    result = run_cli("train", "--preset", "example", "--set", "n_steps=30", "--out", out if out.startswith("/") else tmp_path / out)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
