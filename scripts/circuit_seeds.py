"""Pizza/Clock verdict rates over seeds of the `pizza` (α = 0) and `clock` (α = 1) presets.

Trains seeds 0..N-1 of each preset (a few at a time as one stacked computation: on a CPU each run's
weights equal its training alone, bit for bit; finished runs are reused, so the script resumes),
takes each run's verdict over its last VERDICT_STRETCH checkpoints, and prints the Markdown table
for docs/circuits.md with the numbers behind each verdict and the rate per preset.

    python scripts/circuit_seeds.py --seeds 12 --root runs/circuits
"""

from __future__ import annotations

import argparse
from pathlib import Path

from grokscope import build_config
from grokscope.analysis import analyze_run, save_analysis
from grokscope.analysis.analyze import verdict_summary
from grokscope.thresholds import VERDICT_STRETCH
from grokscope.training import train_together

PRESETS = {"pizza": "pizza", "clock": "clock"}  # preset -> the verdict Zhong et al. report for it


def _final(analysis) -> str:
    """The run's verdict over the stretch analysed, and why none when none (only the last
    checkpoints are analysed, so "stable from" would name the first of them, not when it formed)."""
    final = analysis.final_verdict
    return final if final != "unclear" else verdict_summary(analysis.circuit_json())


def _row(preset: str, seed: int, run) -> tuple[str, str]:
    analysis = analyze_run(run, progress=False, last=VERDICT_STRETCH)
    save_analysis(run, analysis)
    last = analysis.checkpoints[-1].circuit
    doubling = "—" if last["frequency_doubling"] is None else f"{last['frequency_doubling']:.3f}"
    verdicts = "/".join(analysis.verdicts)
    row = (f"| {preset} (α={run.config.model.attention_rate:g}) | {seed} | {run.metrics[-1]['test_acc']:.3f} | "
           f"{last['gradient_symmetricity']:.3f} | {last['distance_irrelevance']:.3f} | {last['sum_dependence']:.3f} | "
           f"{doubling} | {verdicts} | {_final(analysis)} |")
    return row, analysis.final_verdict


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=12, help="seeds 0..N-1 of each preset")
    parser.add_argument("--together", type=int, default=4, help="seeds trained as one stacked computation")
    parser.add_argument("--root", default="runs/circuits")
    args = parser.parse_args()
    rows, finals = [], {preset: [] for preset in PRESETS}
    for preset in PRESETS:
        for first in range(0, args.seeds, args.together):
            seeds = range(first, min(first + args.together, args.seeds))
            runs = train_together([build_config(preset, seed=s) for s in seeds],
                                  [Path(args.root) / f"{preset}-{s}" for s in seeds], progress=False)
            for seed, run in zip(seeds, runs):
                row, final = _row(preset, seed, run)
                rows.append(row)
                finals[preset].append(final)
                print(row, flush=True)
    print(f"\n| preset | seed | test acc | gradient symmetricity | distance irrelevance | sum dependence | frequency doubling "
          f"| verdicts of the last {VERDICT_STRETCH} checkpoints | final verdict |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    for preset, expected in PRESETS.items():
        counts = {v: finals[preset].count(v) for v in ("pizza", "clock", "unclear")}
        print(f"{preset}: {counts[expected]} of {len(finals[preset])} seeds give the expected verdict ({expected}); "
              + ", ".join(f"{v} {n}" for v, n in counts.items()))


if __name__ == "__main__":
    main()
