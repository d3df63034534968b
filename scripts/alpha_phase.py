"""Can the LLC tell Pizza from Clock? Tables and a figure from an `alpha-phase` sweep directory.

    grokscope sweep alpha-phase --out runs/alpha-phase
    python scripts/alpha_phase.py runs/alpha-phase --figure docs/alpha_phase.png

Prints (markdown, for docs/refined.md) the verdicts and LLC columns per attention rate α, and each
LLC column's AUROC as a Pizza score over the points called pizza or clock (the sweep's
separation.json), with the same AUROC inside each α that holds both verdicts.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from grokscope.layout import SweepPaths
from grokscope.plotting import save_figure
from grokscope.sweeps.separation import auroc, separation
from grokscope.sweeps.table import read_results, refined_columns

VERDICT_COLOURS = {"pizza": "C3", "clock": "C0", "unclear": "0.6"}


def _floats(rows, column):
    return np.array([float(r[column]) if r.get(column) not in (None, "") else np.nan for r in rows])


def per_alpha_table(rows, columns):
    alphas = sorted({float(r["attention_rate"]) for r in rows})
    print("| α | verdicts | " + " | ".join(columns) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in columns) + " |")
    for alpha in alphas:
        group = [r for r in rows if float(r["attention_rate"]) == alpha]
        verdicts = Counter(r["verdict"] for r in group)
        cells = []
        for column in columns:
            values = _floats(group, column)
            cells.append(f"{np.nanmean(values):.3g} ± {np.nanstd(values, ddof=1):.2g}" if len(values) > 1 else f"{values[0]:.3g}")
        print(f"| {alpha:g} | " + ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items())) + " | " + " | ".join(cells) + " |")


def separation_table(rows):
    print("\n| LLC column | pizza / clock points | pizza mean | clock mean | AUROC (95% bootstrap) | AUROC within each mixed α |")
    print("| --- | --- | --- | --- | --- | --- |")
    mixed = [a for a in sorted({float(r["attention_rate"]) for r in rows})
             if {"pizza", "clock"} <= {r["verdict"] for r in rows if float(r["attention_rate"]) == a}]
    for entry in separation(rows):
        within = []
        for alpha in mixed:
            group = [r for r in rows if float(r["attention_rate"]) == alpha]
            pizza = _floats([r for r in group if r["verdict"] == "pizza"], entry["column"])
            clock = _floats([r for r in group if r["verdict"] == "clock"], entry["column"])
            within.append(f"α {alpha:g}: {auroc(pizza, clock):.2f} ({len(pizza)}/{len(clock)})")
        print(f"| {entry['column']} | {entry['n_pizza']} / {entry['n_clock']} | {entry['pizza_mean']:.3g} | {entry['clock_mean']:.3g} | "
              f"{entry['auroc']:.2f} ({entry['low']:.2f}–{entry['high']:.2f}) | {'; '.join(within) or '—'} |")


def per_seed_table(rows, column="llc_mean"):
    """``column`` per seed (rows) and α (columns), with each point's verdict: seeds share their data
    split and initialisation across α, so this compares circuits with everything else held fixed."""
    alphas = sorted({float(r["attention_rate"]) for r in rows})
    print("\n| seed | " + " | ".join(f"α = {a:g}" for a in alphas) + " |")
    print("| --- | " + " | ".join("---" for _ in alphas) + " |")
    for seed in sorted({int(r["seed"]) for r in rows}):
        cells = {float(r["attention_rate"]): f"{float(r[column]):.3g} ({r['verdict']})" for r in rows if int(r["seed"]) == seed}
        print(f"| {seed} | " + " | ".join(cells.get(a, "—") for a in alphas) + " |")


def figure(rows, columns):
    fig, axes = plt.subplots(1, len(columns), figsize=(3.2 * len(columns), 3.2), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, column in zip(axes[0], columns):
        for verdict, colour in VERDICT_COLOURS.items():
            group = [r for r in rows if r["verdict"] == verdict]
            x = np.array([float(r["attention_rate"]) for r in group]) + rng.uniform(-0.03, 0.03, len(group))
            ax.scatter(x, _floats(group, column), color=colour, label=verdict, s=22)
        ax.set(xlabel="attention rate α", title=column)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("alpha-phase sweep: final λ̂, weight- and data-refined LLCs, coloured by circuit verdict")
    fig.tight_layout()
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--figure", type=Path)
    args = parser.parse_args()
    rows = [r for r in read_results(args.sweep_dir) if r["status"] == "done"]
    columns = ["llc_mean", *refined_columns(rows)]
    summary = ["final_test_acc", "gradient_symmetricity", "distance_irrelevance", "sum_dependence"]
    per_alpha_table(rows, summary)
    print()
    per_alpha_table(rows, columns)
    separation_table(rows)
    per_seed_table(rows)
    print("\nsweep:", json.dumps(json.loads(SweepPaths(args.sweep_dir).spec.read_text())))
    if args.figure:
        shown = ["llc_mean", *[c for c in columns if c.startswith("wr_") and not c.startswith("wr_head")], "dr_bins_cv"]
        save_figure(figure(rows, [c for c in shown if c in columns]), args.figure)
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
