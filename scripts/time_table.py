"""λ̂ of a deep linear network against step size ε and time T = ε × steps (docs/validation.md,
"λ̂ against step size and time").

Every cell of the rule's grid (ε₀·2^j, j = −3..3) runs one block of STEPS steps; λ̂(ε, T) is each
chain's nβ·(mean loss over the steps that cover the time [T/2, T]) − L_n(w*), averaged over the
chains, with its standard error. The chains at every ε discretise the same Langevin diffusion, so
at equal T the cells differ by step-size bias alone; along a row, λ̂ still rising with T is a
chain that has not settled (Roberts & Tweedie 1996).

    python scripts/time_table.py 12,6,2,6 1 1e-7 --out docs/validation/time_table_development.jsonl

Rows already in --out are skipped, so a list of networks resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from grokscope.llc.config import sgld_config
from grokscope.llc.estimator import sample_llc
from grokscope.llc.tuning.calibrate import GRID_OFFSETS
from grokscope.llc.validation.suite import dln_case

SHORTEST_WINDOW = 200  # steps: a shorter [T/2, T] is too noisy to read


def time_table(widths: list[int], rank: int, epsilon: float, steps: int) -> dict:
    case = dln_case(widths, rank)
    model, data = case.build()
    config = sgld_config(**case.settings | dict(n_steps=steps, max_steps=steps, mala=True))
    epsilons = [epsilon * offset for offset in GRID_OFFSETS]
    weights = {n: p.detach() for n, p in model.named_parameters()}
    result = sample_llc(model, data, [weights] * len(epsilons), loss="mse", config=config,
                        checkpoint_ids=[0] * len(epsilons), per_set=[dict(epsilon=e) for e in epsilons])
    nbeta, chains = config.resolve_nbeta(len(data[0]))[0], config.chains
    losses = result.loss_draws.double().numpy()  # [steps, sets × chains]
    times = sorted({e * steps / 2**k for e in (epsilons[0], epsilons[-1]) for k in range(12)})
    cells = {}
    for k, (eps, entry) in enumerate(zip(epsilons, result.entries)):
        own = losses[:, k * chains:(k + 1) * chains]
        row = {}
        for t in times:
            end = int(round(t / eps))
            if SHORTEST_WINDOW <= end <= entry.steps_used:
                per_chain = nbeta * (np.nanmean(own[end // 2:end], axis=0) - entry.init_loss)
                row[f"{t:.6g}"] = [float(np.nanmean(per_chain)), float(np.nanstd(per_chain, ddof=1) / math.sqrt(chains))]
        cells[f"{eps:.6g}"] = dict(llc=entry.llc_mean, status=entry.status, mala=entry.mala_acceptance, row=row)
    return dict(case=case.name, truth=case.truth, steps=steps, epsilon=epsilon, table=cells)


def show(record: dict) -> None:
    times = sorted({float(t) for cell in record["table"].values() for t in cell["row"]})
    print(f"{record['case']}, true λ {record['truth']:g}; λ̂(ε, T), T = ε × steps:")
    print("ε \\ T    " + " ".join(f"{t:8.3g}" for t in times))
    for eps, cell in record["table"].items():
        values = {float(t): v[0] for t, v in cell["row"].items()}
        print(f"{float(eps):8.3g} " + " ".join(f"{values[t]:8.3f}" if t in values else " " * 8 for t in times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("widths", help="the network's widths, e.g. 12,6,2,6")
    parser.add_argument("rank", type=int)
    parser.add_argument("epsilon", type=float, help="ε₀, the grid's middle (the rule's bracket, from a validation row)")
    parser.add_argument("--steps", type=int, default=80_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    name = dln_case(widths, args.rank).name
    done = [json.loads(line) for line in args.out.read_text().splitlines()] if args.out and args.out.exists() else []
    record = next((r for r in done if r["case"] == name and r["steps"] == args.steps), None)
    if record is None:
        record = time_table(widths, args.rank, args.epsilon, args.steps)
        if args.out:
            with args.out.open("a") as out:
                out.write(json.dumps(record) + "\n")
    show(record)


if __name__ == "__main__":
    main()
