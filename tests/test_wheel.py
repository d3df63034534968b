"""The package as a user gets it: built into an sdist and a wheel, installed into a fresh virtual
environment with only the core requirements, and run from a directory outside the source tree."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_the_wheel_installs_and_runs_outside_the_source_tree(tmp_path):
    dist = tmp_path / "dist"
    build = subprocess.run([sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(dist), str(ROOT)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    wheel = next(dist.glob("grokscope-*.whl"))
    assert next(dist.glob("grokscope-*.tar.gz"))
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "grokscope/report/page.html" in names  # the report's template is package data
    assert {"grokscope/models/mlp_native.c", "grokscope/llc/sampling/noise_native.c"} <= set(names)  # and the C kernels' sources
    assert not any(name.startswith(("tests/", "grokscope/report/browser")) for name in names)  # test support stays out

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt")]
    install = subprocess.run([*pip, str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-2000:]

    work = tmp_path / "elsewhere"
    work.mkdir()

    def grokscope(*args):
        result = subprocess.run([str(venv / "bin" / "grokscope"), *args], cwd=work, capture_output=True, text=True)
        assert result.returncode == 0, (args, result.stderr[-2000:])
        return result

    located = subprocess.run([str(venv / "bin" / "python"), "-c", "import grokscope; print(grokscope.__file__)"],
                             cwd=work, capture_output=True, text=True)
    assert str(venv) in located.stdout and str(ROOT) not in located.stdout
    compiled = subprocess.run([str(venv / "bin" / "python"), "-c", "from grokscope.models import MLP, MLPConfig; "
                               "print(MLP(MLPConfig(), 7).compiled_loss_and_grads('cross_entropy') is not None)"],
                              cwd=work, capture_output=True, text=True, env={**os.environ, "GROKSCOPE_NATIVE_CACHE": str(tmp_path / "native")})
    assert compiled.stdout.strip() == "True", compiled.stderr[-2000:]  # built from the installed source
    assert "sweep" in grokscope("--help").stdout
    grokscope("train", "--set", "n_steps=50", "--set", "n_checkpoints=2", "--out", "run", "--quiet")
    grokscope("llc", "run", "--steps", "40", "--chains", "2", "--json")
    grokscope("report", "run")
    assert "Local learning coefficient" in (work / "run" / "report.html").read_text()

    for extra in ("ray", "bench", "dev", "notebook"):  # every extra resolves by name
        resolved = subprocess.run([*pip, "--dry-run", f"{wheel}[{extra}]"], capture_output=True, text=True)
        assert resolved.returncode == 0, (extra, resolved.stderr[-2000:])
