"""Pizza/Clock verdicts over seeds of the `pizza` (α = 0) and `clock` (α = 1) presets.

Trains each seed (reusing finished runs), analyses it, and prints the Markdown table for
docs/circuits.md with the three numbers behind each verdict.

    python scripts/circuit_seeds.py --seeds 5 --root runs/circuits
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from grokscope import build_config, train
from grokscope.analysis import analyze_run, save_analysis


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--root", default="runs/circuits")
    args = parser.parse_args()
    rows = []
    agree = {"pizza": 0, "clock": 0}
    for preset in ("pizza", "clock"):
        for seed in range(args.seeds):
            start = time.perf_counter()
            run = train(build_config(preset, seed=seed), Path(args.root) / f"{preset}-{seed}", progress=False)
            trained = time.perf_counter() - start
            analysis = analyze_run(run, progress=False)
            save_analysis(run, analysis)
            last = analysis.checkpoints[-1].circuit
            agree[preset] += analysis.final_verdict == preset
            doubling = "—" if last["frequency_doubling"] is None else f"{last['frequency_doubling']:.3f}"
            rows.append(
                f"| {preset} (α={run.config.model.attention_rate:g}) | {seed} | {run.metrics[-1]['test_acc']:.3f} | "
                f"{last['gradient_symmetricity']:.3f} | {last['distance_irrelevance']:.3f} | {doubling} | "
                f"{analysis.final_verdict} | {analysis.circuit_formed_at} | {analysis.key_frequencies} | {trained:.0f} s |"
            )
            print(rows[-1], flush=True)
    print("\n| preset | seed | test acc | gradient symmetricity | distance irrelevance | frequency doubling | verdict | formed at step | key frequencies | training time |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    for preset, count in agree.items():
        print(f"{preset}: {count}/{args.seeds} seeds give the expected verdict")


if __name__ == "__main__":
    main()
