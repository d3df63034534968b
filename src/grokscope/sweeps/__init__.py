"""Sweeps: a grid of runs (p, training fraction, sizes, labels, seeds), each an ordinary run
directory, computed in batched units on local worker processes or a Ray cluster, summarised in
one results table with figures (``grokscope sweep``)."""

from .driver import SweepOutcome, run_sweep
from .spec import BUILTIN_SPECS, SweepSpec, load_spec, parse_spec, sweep_points

__all__ = ["BUILTIN_SPECS", "SweepOutcome", "SweepSpec", "load_spec", "parse_spec", "run_sweep", "sweep_points"]
