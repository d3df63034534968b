"""End to end, process start included: `grokscope llc RUN` against the same workload through
devinterp 1.3.2, each in a fresh Python process, side by side in one session.

Workload: llc_speed.py's (every checkpoint of the `example` run, SGLD γ=5, ε=1e-3, 3000 steps,
750 burn-in, m=64, nβ = n/ln n), with `--chains` chains per checkpoint (default 1). The devinterp
process loads the same checkpoints (through grokscope's loader, as a user of both would) and runs
`estimate_learning_coeff_with_summary` on each in turn.

    python benchmarks/llc_cli_speed.py [--chains 1] [--run runs/bench-example]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from llc_speed import SETTINGS, run_devinterp


def timed_process(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def devinterp_worker(run_dir: str, chains: int) -> None:
    import torch

    from grokscope import load_run

    torch.set_num_threads(2)
    run = load_run(run_dir)
    run_devinterp(run, run.steps, chains, torch.device("cpu"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/bench-example", help="the example preset's run (trained here if missing)")
    parser.add_argument("--chains", type=int, default=1)
    parser.add_argument("--devinterp-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.devinterp_worker:
        devinterp_worker(args.run, args.chains)
        return
    grokscope = str(Path(sys.executable).with_name("grokscope"))
    if not (Path(args.run) / "config.json").exists():
        subprocess.run([grokscope, "train", "--preset", "example", "--out", args.run], check=True, stdout=subprocess.DEVNULL)
    ours = timed_process([
        grokscope, "llc", args.run, "--chains", str(args.chains), "--epsilon", str(SETTINGS["epsilon"]),
        "--gamma", str(SETTINGS["gamma"]), "--steps", str(SETTINGS["n_steps"]), "--burn-in", str(SETTINGS["burn_in"]),
        "--max-steps", str(SETTINGS["n_steps"]),  # a fixed budget, as devinterp's
        "--batch-size", str(SETTINGS["batch_size"]), "--checkpoints", "all",
    ])
    theirs = timed_process([sys.executable, __file__, "--devinterp-worker", "--run", args.run, "--chains", str(args.chains)])
    print("| chains/checkpoint | `grokscope llc` (new process) | devinterp 1.3.2 (new process) | speed-up |")
    print("| --- | --- | --- | --- |")
    print(f"| {args.chains} | {ours:.1f} s | {theirs:.0f} s | {theirs / ours:.1f}× |")


if __name__ == "__main__":
    main()
