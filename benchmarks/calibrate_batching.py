"""`grokscope calibrate`: the whole ε × nβ grid as ONE batched run against the cell-by-cell loop it
replaced (one `run_llc` per cell), on the final checkpoint of the `example` preset, in one process.

    python benchmarks/calibrate_batching.py [--steps 3000] [--chains 4]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from grokscope import build_config, train
from grokscope.llc import sgld_config
from grokscope.llc.api import run_llc
from grokscope.llc.tuning.calibrate import calibrate

EPSILONS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)  # a 5 × 5 ε × nβ grid, given explicitly (no bracket)
NBETA_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)


def cell_by_cell(run, base) -> list:
    nbeta = base.resolve_nbeta(run.dataset().n_train)[0]
    return [run_llc(run, base.model_copy(update=dict(epsilon=e, nbeta=nbeta * f)), "last", progress=False).entries[0].llc_mean
            for f in NBETA_FACTORS for e in EPSILONS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/bench-example")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--chains", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(2)
    run = train(build_config("example"), Path(args.run), progress=False)
    base = sgld_config(n_steps=args.steps, max_steps=args.steps, chains=args.chains)  # a fixed budget: the same work either way
    cells = len(EPSILONS) * len(NBETA_FACTORS)

    start = time.perf_counter()
    batched = [c["llc_mean"] for c in calibrate(run, base, epsilons=EPSILONS, nbeta_factors=NBETA_FACTORS)["cells"]]
    t_batched = time.perf_counter() - start
    start = time.perf_counter()
    looped = cell_by_cell(run, base)
    t_looped = time.perf_counter() - start
    same = batched == looped
    print(f"{cells} cells × {args.chains} chains × {args.steps} steps at the last checkpoint")
    print("| calibrate | wall time | speed-up |\n| --- | --- | --- |")
    print(f"| cell by cell (one run_llc per cell) | {t_looped:.1f} s | 1.0× |")
    print(f"| one batched run | {t_batched:.1f} s | {t_looped / t_batched:.1f}× |")
    print(f"every cell's λ̂ identical both ways: {same}")


if __name__ == "__main__":
    main()
