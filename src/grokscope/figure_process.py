"""A figure drawn by a helper process that imports matplotlib while the command imports torch.

`grokscope llc` spends seconds importing matplotlib and torch, each on one core; started first, the
helper does its import on the other core, and draws the figure once the command sends it the data.
It imports no torch: each figure it can draw is a function of stored (JSON) data, named in
``FIGURES``. Whatever goes wrong in the helper, the command draws the figure
itself, so the helper can make a command faster and never makes it fail."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from importlib import import_module
from pathlib import Path

FIGURES = {"llc": "grokscope.llc.figures:plot_llc"}


def _figure_function(name: str):
    module, function = FIGURES[name].split(":")
    return getattr(import_module(module), function)


class FigureProcess:
    """A started helper; ``draw`` sends it one figure (one only) and waits until the file is on disk."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    @classmethod
    def start(cls) -> FigureProcess | None:
        """A started helper, or None where no process can be started (the caller draws itself)."""
        try:
            return cls()
        except OSError:
            return None

    def draw(self, figure: str, args: list, path: Path) -> bool:
        """Draw ``FIGURES[figure](*args)`` to ``path`` (PNG, written atomically). False when the
        helper could not (it died, drew its figure already, or the drawing failed there): the caller
        then draws it itself."""
        if self._process.poll() is not None:
            return False
        job = json.dumps({"figure": figure, "args": args, "path": str(path)}).encode() + b"\n"
        self._process.communicate(job)  # a helper that is gone gives a non-zero return code
        return self._process.returncode == 0

    def close(self) -> None:
        """End a helper that was never sent a figure."""
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()


def _warm_up() -> None:
    """Draw a small figure once: the first drawing in a process loads the font and builds the
    mathtext parser a log axis needs, so the real figure does not pay for it."""
    from matplotlib.figure import Figure

    ax = Figure(figsize=(2, 2)).subplots()
    ax.plot([1, 10], label="λ̂")
    ax.set_yscale("log")
    ax.legend()
    ax.figure.savefig(io.BytesIO(), format="png", dpi=30)


def serve() -> None:
    """The helper: import the figure functions and warm matplotlib up, then draw the one job read
    from stdin (none if stdin closes first)."""
    from .plotting import save_figure

    functions = {name: _figure_function(name) for name in FIGURES}
    _warm_up()
    line = sys.stdin.buffer.readline()
    if line:
        job = json.loads(line)
        save_figure(functions[job["figure"]](*job["args"]), Path(job["path"]))


if __name__ == "__main__":
    try:
        serve()
    except KeyboardInterrupt:  # Ctrl-C reaches the helper too; the command reports it
        sys.exit(130)
    os._exit(0)  # the figure is on disk; skip the interpreter's teardown, which the caller waits for
