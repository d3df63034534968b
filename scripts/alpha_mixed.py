"""Pizza or Clock at one attention rate: does λ̂ follow the circuit when α is held fixed?

    grokscope sweep scripts/specs/alpha-mixed.yaml --out runs/alpha-mixed
    for d in runs/alpha-mixed/runs/*; do grokscope llc $d --checkpoints last --chains 4 --steps 1500 \\
        --batch-size 64 --epsilon 3e-6 --refine components; done
    python scripts/alpha_mixed.py runs/alpha-mixed

Seeds not at a minimum at the last checkpoint (training loss above AT_A_MINIMUM, e.g. caught in
one of Adam's loss spikes) are left out and named. Prints (markdown, for docs/refined.md) each
seed's circuit measures, verdict, λ̂ and weight-refined LLCs, then the Spearman rank correlation of
every LLC column with distance irrelevance (the Pizza-to-Clock axis: ~0.3 for a Pizza, ≥ 0.7 for a
Clock) and with gradient symmetricity, with a permutation p-value; then each column's AUROC as a
score for the Pizza-like seeds (distance irrelevance within the verdict's Pizza bound, whatever
their symmetricity) against those called `clock`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from grokscope.sweeps.separation import auroc, auroc_interval
from grokscope.sweeps.table import read_results
from grokscope.thresholds import PIZZA_MAX_DISTANCE_IRRELEVANCE

MEASURES = ("gradient_symmetricity", "distance_irrelevance", "sum_dependence")
AT_A_MINIMUM = 1e-3  # final training loss above which a seed is left out (e.g. caught in a loss spike)


def ranks(values: np.ndarray) -> np.ndarray:
    return values.argsort().argsort().astype(float)


def spearman(x: np.ndarray, y: np.ndarray, draws: int = 20000) -> tuple[float, float]:
    """Rank correlation and its two-sided permutation p-value (``draws`` seeded random orderings)."""
    rx, ry = ranks(x), ranks(y)
    rho = float(np.corrcoef(rx, ry)[0, 1])
    rng = np.random.default_rng(0)
    null = np.array([np.corrcoef(rx, ry[rng.permutation(len(ry))])[0, 1] for _ in range(draws)])
    return rho, float(np.mean(np.abs(null) >= abs(rho) - 1e-12))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", type=Path)
    args = parser.parse_args()
    rows = sorted(read_results(args.sweep), key=lambda r: int(r["seed"]))
    away = [r for r in rows if float(r["final_train_loss"]) > AT_A_MINIMUM]
    rows = [r for r in rows if r not in away]
    if away:
        print(f"left out, not at a minimum at the last checkpoint (train loss > {AT_A_MINIMUM:g}; λ̂ is defined at one): "
              + ", ".join(f"seed {r['seed']} (train loss {float(r['final_train_loss']):.3g})" for r in away) + "\n")
    llcs: dict[str, list[float]] = {"λ̂": [float(r["llc_mean"]) for r in rows]}
    for r in rows:
        refined_path = args.sweep / r["run_dir"] / "results" / "llc_refined.json"
        parts = json.loads(refined_path.read_text())["components"]["parts"] if refined_path.exists() else {}
        for name, entries in parts.items():
            if name != "whole":
                llcs.setdefault(f"wr {name}", []).append(entries[-1]["llc_mean"])
    llcs = {name: values for name, values in llcs.items() if len(values) == len(rows)}

    print("| seed | verdict | symmetricity | distance irrelevance | sum dependence | " + " | ".join(llcs) + " |")
    print("| --- " * (5 + len(llcs)) + "|")
    for i, r in enumerate(rows):
        cells = [f"{float(r[m]):.3f}" for m in MEASURES] + [f"{values[i]:.3g}" for values in llcs.values()]
        print(f"| {r['seed']} | {r['verdict']} | " + " | ".join(cells) + " |")

    print("\n| LLC column | Spearman ρ with distance irrelevance (p) | with symmetricity (p) |")
    print("| --- | --- | --- |")
    di = np.array([float(r["distance_irrelevance"]) for r in rows])
    sym = np.array([float(r["gradient_symmetricity"]) for r in rows])
    for name, values in llcs.items():
        (r_di, p_di), (r_sym, p_sym) = spearman(np.array(values), di), spearman(np.array(values), sym)
        print(f"| {name} | {r_di:+.2f} ({p_di:.2f}) | {r_sym:+.2f} ({p_sym:.2f}) |")

    pizza_like = di <= PIZZA_MAX_DISTANCE_IRRELEVANCE
    clock = np.array([r["verdict"] == "clock" for r in rows])
    print(f"\n| LLC column | AUROC, {pizza_like.sum()} Pizza-like against {clock.sum()} clock (95% bootstrap) |")
    print("| --- | --- |")
    for name, values in llcs.items():
        values = np.array(values)
        low, high = auroc_interval(values[pizza_like], values[clock])
        print(f"| {name} | {auroc(values[pizza_like], values[clock]):.2f} ({low:.2f}–{high:.2f}) |")


if __name__ == "__main__":
    main()
