import json
import subprocess
import sys

import pytest


def grokscope(*args):
    return subprocess.run([sys.executable, "-m", "grokscope.cli", *args], capture_output=True, text=True)


def test_invalid_config_is_one_clear_line_and_writes_nothing(tmp_path):
    result = grokscope("train", "--set", "p=1", "--out", str(tmp_path / "r"))
    assert result.returncode == 2
    assert "task.p=1" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "r").exists()


def test_train_cli_prints_summary(tmp_path):
    sets = {"p": 7, "train_frac": 0.6, "n_steps": 20, "n_checkpoints": 2, "hidden_size": 4, "embed_dim": 2}
    result = grokscope("train", "--out", str(tmp_path / "r"), *[f"--set={k}={json.dumps(v)}" for k, v in sets.items()])
    assert result.returncode == 0, result.stderr
    assert "test_acc" in result.stdout and "first at step" in result.stdout
    assert "train:" in result.stderr  # the progress bar


def test_console_command_runs_exit_handlers_and_keeps_its_exit_code(tmp_path):
    """Python's exit handlers run, and the exit code and output come through."""
    script = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('exit handler ran', flush=True))\n"
        "from grokscope.cli import run\n"
        f"sys.argv = ['grokscope', 'llc', {str(tmp_path / 'missing')!r}]\n"
        "run()\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 2
    assert "is not a grokscope run" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout.strip() == "exit handler ran"


@pytest.mark.parametrize("words", [["--help"], pytest.param(["--version"], marks=pytest.mark.slow),
                                   pytest.param(["llc", "--help"], marks=pytest.mark.slow)])
def test_the_command_says_what_it_is_and_works_under_python_OO(words):
    from grokscope import __version__

    result = subprocess.run([sys.executable, "-OO", "-m", "grokscope", *words], capture_output=True, text=True)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    if words == ["--version"]:
        assert result.stdout.strip() == f"grokscope {__version__}"
    elif words == ["--help"]:
        assert "local learning coefficient" in " ".join(result.stdout.split()) and "``" not in result.stdout


@pytest.mark.slow  # a fresh process under -OO
def test_a_tiny_llc_runs_under_python_OO(tmp_path, tiny_config):
    from grokscope import train

    run = train(tiny_config(), tmp_path / "run", progress=False)
    result = subprocess.run([sys.executable, "-OO", "-m", "grokscope", "llc", str(run.path), "--steps", "40", "--batch-size", "8",
                             "--chains", "2", "--checkpoints", "-1", "--max-steps", "80", "--json"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    settings = json.loads(result.stdout)["settings"]
    assert settings["calibration"]["rule"].startswith("1. Bracket")  # the rule does not come from a docstring


def test_figures_skip_pyplot_on_the_command_line_and_use_it_in_a_session(tmp_path):
    """The command line draws on plain Figures (no pyplot import); where pyplot is loaded (a notebook)
    figures are pyplot's, so the session shows them, and saving one releases it."""
    script = ("import sys; from grokscope.plotting import new_figure, save_figure; fig = new_figure(); fig.subplots().plot([1, 2]); "
              f"save_figure(fig, {str(tmp_path / 'plain.png')!r}); print(fig.canvas.manager is None, 'matplotlib.pyplot' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.stdout.split() == ["True", "False"], result.stderr
    assert (tmp_path / "plain.png").read_bytes().startswith(b"\x89PNG")

    import matplotlib.pyplot as plt

    from grokscope.plotting import new_figure, save_figure

    fig = new_figure()
    assert fig.canvas.manager is not None and fig.number in plt.get_fignums()
    save_figure(fig, tmp_path / "pyplot.png")
    assert fig.number not in plt.get_fignums() and (tmp_path / "pyplot.png").read_bytes().startswith(b"\x89PNG")
