"""The floor probe's chains (llc/diagnostics/floor_probe.py) at one step size at a time on a deep
linear network of the validation, and its verdict on stored runs (docs/validation.md, "The
quadratic floor": a preconditioner for the flat directions).

Plain SGLD's step ε is capped by the stiffest mode of the Hessian, so the flat directions, where
the function g of the splitting lemma lives, move by √ε a step and a chain sits at the quadratic
floor for a long time. The probe's constant preconditioner M = ε (I + ε nβ H / η)⁻¹ keeps the target
and moves the flat directions with step ε. Each row: λ̂ over [T/2, T] per chain, its mean over
[T/4, T/2] and the minibatch MALA acceptance, for the case's data (m = 500, nβ = n/ln n, γ = 1).

    python scripts/curvature_preconditioned.py 4,8,2,9,10,12 1 --out docs/validation/preconditioned_development.jsonl
    python scripts/curvature_preconditioned.py --from docs/validation/preconditioned_development.jsonl

Rows already in --out (same network, ε, η, steps) are skipped, so a run resumes. The stored rows
came from this script's earlier sampler, a loop of its own with the same kernel and other random
streams.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from grokscope.llc.diagnostics.floor_probe import probe_model, verdict
from grokscope.llc.validation.suite import dln_case
from grokscope.thresholds import FLOOR_PROBE_EPSILONS, FLOOR_PROBE_ETA, FLOOR_PROBE_STEPS
from time_table import stored_or_run


def preconditioned_run(widths: list[int], rank: int, epsilon: float) -> dict:
    """The probe's chains at one ε on the case's data (every parameter sampled, from the teacher)."""
    start = time.perf_counter()
    case = dln_case(widths, rank)
    model, (x, y) = case.build()
    n = len(x)
    probe = probe_model(model, (x, y), dict(model.named_parameters()), "mse", n / math.log(n), 1.0, 500, 0, [epsilon])
    run = probe["runs"][0]
    return dict(case=case.name, truth=case.truth, floor=probe["floor"], epsilon=epsilon, eta=FLOOR_PROBE_ETA, steps=probe["steps"],
                llc_per_chain=run["llc_per_chain"], previous_window=[run["llc_earlier"]], mala=run["mala_acceptance"],
                seconds=time.perf_counter() - start)


def show(record: dict) -> None:
    now, before = np.array(record["llc_per_chain"]), np.array(record["previous_window"])
    print(f"{record['case']}: λ {record['truth']:g}, floor {record['floor']:.2f}; ε {record['epsilon']:.3g}, η {record['eta']:g}, "
          f"{record['steps']} steps: λ̂ {now.mean():.3f} ± {now.std(ddof=1) / math.sqrt(len(now)):.3f} "
          f"({now.mean() / record['truth'] - 1:+.1%}), [T/4, T/2] {before.mean():.3f}, MALA {record['mala']:.3f}, {record['seconds']:.0f} s")


def floor_verdict(records: list[dict]) -> dict:
    """The library's verdict (llc/diagnostics/floor_probe.py) on one network's stored runs."""
    runs = [dict(epsilon=r["epsilon"], llc=float(np.mean(r["llc_per_chain"])), mala_acceptance=r["mala"],
                 llc_se=float(np.std(r["llc_per_chain"], ddof=1) / math.sqrt(len(r["llc_per_chain"])))) for r in records]
    return verdict(runs, records[0]["floor"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("widths", nargs="?")
    parser.add_argument("rank", nargs="?", type=int)
    parser.add_argument("epsilon", nargs="?", type=float, help="the step of the flat directions (default: each of FLOOR_PROBE_EPSILONS)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--from", dest="source", type=Path, help="print each stored network's verdict on its floor")
    args = parser.parse_args()
    if args.source:
        records = [json.loads(line) for line in args.source.read_text().splitlines()]
        for case in dict.fromkeys(r["case"] for r in records):
            own = [r for r in records if r["case"] == case]
            found = floor_verdict(own)
            value = "-" if found["llc"] is None else f"{found['llc']:.3f} ({found['llc'] / own[0]['truth'] - 1:+.1%}) at ε {found['epsilon']:.3g}"
            print(f"| {case} | {own[0]['truth']:g} | {own[0]['floor']:.2f} | {value} | {found['verdict']} |")
        return
    if not args.widths or args.rank is None:
        parser.error("give WIDTHS RANK [EPSILON], or --from FILE")
    widths = [int(w) for w in args.widths.split(",")]
    for epsilon in [args.epsilon] if args.epsilon else FLOOR_PROBE_EPSILONS:
        key = dict(case=f"DLN {widths} r{args.rank}", epsilon=epsilon, eta=FLOOR_PROBE_ETA, steps=FLOOR_PROBE_STEPS)
        show(stored_or_run(args.out, key, lambda: preconditioned_run(widths, args.rank, epsilon)))


if __name__ == "__main__":
    main()
