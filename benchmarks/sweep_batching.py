"""Sweep batching: the seeds of one sweep point trained and sampled together (one stacked
computation, as `grokscope sweep` does) against the same runs one at a time, in this process.

Workload: the `example` preset (p=53, 1500 steps), seeds 0..S-1, then the LLC of every checkpoint
(4 chains, 2000 SGLD steps, m=64), on one torch thread, as a sweep unit runs. The results are the
same bit for bit either way (tests/test_training.py, tests/test_llc_estimator.py); this measures time.

    python benchmarks/sweep_batching.py [--seeds 3] [--checkpoints all|last]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from grokscope import build_config, train
from grokscope.llc import sgld_config
from grokscope.llc.api import run_llc
from grokscope.llc.runs.checkpoints import run_llc_together
from grokscope.training import train_together

SGLD = dict(chains=4, n_steps=2000, max_steps=2000, batch_size=64)  # a fixed budget: the same work either way


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--checkpoints", default="all", choices=["all", "last"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    configs = [build_config("example", seed=s) for s in range(args.seeds)]
    sgld = sgld_config(**SGLD)
    root = Path(tempfile.mkdtemp(prefix="grokscope-bench-"))
    try:
        alone_train, runs = timed(lambda: [train(c, root / f"alone{i}", progress=False) for i, c in enumerate(configs)])
        together_train, _ = timed(lambda: train_together(configs, [root / f"together{i}" for i in range(len(configs))], progress=False))
        alone_llc, _ = timed(lambda: [run_llc(r, sgld, args.checkpoints, progress=False) for r in runs])
        together_llc, _ = timed(lambda: run_llc_together(runs, sgld, args.checkpoints, progress=False))
    finally:
        shutil.rmtree(root)
    print(f"{args.seeds} seeds of `example`, LLC on {args.checkpoints} checkpoints ({SGLD}), 1 torch thread")
    print("| phase | one at a time | together | speed-up |")
    print("| --- | --- | --- | --- |")
    for phase, alone, together in (("training", alone_train, together_train), ("LLC", alone_llc, together_llc),
                                   ("both", alone_train + alone_llc, together_train + together_llc)):
        print(f"| {phase} | {alone:.1f} s | {together:.1f} s | {alone / together:.2f}× |")


if __name__ == "__main__":
    main()
