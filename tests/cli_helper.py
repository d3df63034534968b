"""Run the command line in this process (fast: no interpreter start, no torch import per call);
tests/test_cli.py keeps real subprocess runs of the installed entry point."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

from grokscope.cli import main


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str) -> Completed:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exit_:  # argparse refusing a flag
            code = exit_.code
    return Completed(code, out.getvalue(), err.getvalue())
