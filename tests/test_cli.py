import json
import subprocess
import sys


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
    """The command ends its process early (skipping libtorch's static destructors); Python's exit
    handlers still run and the exit code and output still come through."""
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
