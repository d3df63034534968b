"""The figure helper process (figure_process.py): it imports no torch, draws exactly what the command
would, and when it cannot, says so and leaves the figure to the caller."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tiny import tiny_config

from grokscope import load_run, train
from grokscope.figure_process import FigureProcess
from grokscope.llc.figures import plot_llc
from grokscope.plotting import save_figure


def stored_llc(steps: list[int | None]) -> dict:
    """An llc.json-shaped result: λ̂ rising then falling, one checkpoint without an estimate."""
    entries = [{"checkpoint_id": i, "step": step, "llc_mean": None if i == 2 else 10.0 + 3 * i - 0.4 * i * i,
                "llc_std": 0.5 + 0.1 * i} for i, step in enumerate(steps)]
    settings = {"nbeta": 338.2, "nbeta_convention": "n/ln n", "epsilon": 1e-3, "gamma": 5.0, "chains": 4}
    return {"settings": settings, "checkpoints": entries}


METRICS = [{"step": s, "train_loss": 4.0 / (1 + s), "test_loss": 4.0 / (1 + s / 50), "train_acc": 0.5, "test_acc": 0.5}
           for s in range(0, 500, 10)]


def test_the_figure_code_and_the_command_line_import_no_torch():
    script = ("import sys, grokscope.cli, grokscope.figure_process, grokscope.llc.figures; "
              "print('torch' in sys.modules, 'matplotlib' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.stdout.split() == ["False", "False"], result.stderr


@pytest.mark.parametrize("steps, metrics", [([0, 100, 200, 300, 400, 499], METRICS), ([None] * 4, None)])
def test_the_helper_draws_the_same_png_as_this_process(tmp_path, steps, metrics):
    llc = stored_llc(steps)
    helper = FigureProcess()
    assert helper.draw("llc", [llc, metrics], tmp_path / "helper.png")
    assert not helper.draw("llc", [llc, metrics], tmp_path / "again.png")  # one figure a helper
    assert not (tmp_path / "again.png").exists()
    save_figure(plot_llc(llc, metrics), tmp_path / "here.png")
    assert (tmp_path / "helper.png").read_bytes() == (tmp_path / "here.png").read_bytes()


def test_a_helper_that_cannot_draw_says_so_and_writes_nothing(tmp_path):
    broken = stored_llc([0, 1])
    del broken["settings"]["gamma"]
    assert not FigureProcess().draw("llc", [broken, None], tmp_path / "broken.png")
    gone = FigureProcess()
    gone.close()
    assert not gone.draw("llc", [stored_llc([0, 1]), None], tmp_path / "gone.png")
    assert list(tmp_path.iterdir()) == []


def test_no_helper_where_no_process_can_start(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python-here"))
    assert FigureProcess.start() is None


@pytest.mark.slow  # the console command in a fresh process
def test_the_console_command_draws_llc_png_from_what_it_stored(tmp_path):
    run_dir = train(tiny_config(n_steps=100, n_checkpoints=3), tmp_path / "run", progress=False).path
    command = Path(sys.executable).with_name("grokscope")
    result = subprocess.run([command, "llc", run_dir, "--steps", "60", "--chains", "2", "--batch-size", "16"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    save_figure(plot_llc(json.loads((run_dir / "results" / "llc.json").read_text()), load_run(run_dir).metrics),
                tmp_path / "expected.png")
    assert (run_dir / "figures" / "llc.png").read_bytes() == (tmp_path / "expected.png").read_bytes()
