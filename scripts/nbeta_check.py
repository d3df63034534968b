"""λ̂ of a deep linear network at nβ, 4nβ and 16nβ (docs/validation.md, "The quadratic floor": what did
not help).

The LLC is the coefficient of log nβ in the free energy (Watanabe 2013, WBIC; Lau et al. 2023,
arXiv 2308.12108): nβ·(E_w[L_n(w)] − L_n(w*)) reads λ only where nβ is large enough for the
posterior near w* to be in its asymptotic regime. A plateau of λ̂ that stays put at larger nβ is
what the sampler sees of the target at every temperature; one that moves is a finite-nβ reading.
Each cell runs ε/s at nβ·s, so ε·nβ, the drift per step, is the same in every cell; where the
explored posterior is Gaussian the cells then read the same λ̂, so a plateau at the quadratic floor
(llc/diagnostics/quadratic.py) looks the same at every nβ.

    python scripts/nbeta_check.py 4,8,2,9,10,12 1 5e-8 --out docs/validation/nbeta_development.jsonl

Rows already in --out (same network, ε, steps and scales) are skipped, so a run resumes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from grokscope.llc.validation.suite import dln_case
from time_table import last_window_answer, stored_or_run, table_cells

SCALES = (1.0, 4.0, 16.0)


def nbeta_table(widths: list[int], rank: int, epsilon: float, steps: int, scales: tuple[float, ...]) -> dict:
    """One block of ``steps`` at ε/s and nβ·s for each scale s: λ̂ over the windows [T/2, T]."""
    start = time.perf_counter()
    case = dln_case(widths, rank)
    model, data = case.build()
    weights = {n: p.detach() for n, p in model.named_parameters()}
    order = sorted(scales, reverse=True)  # table_cells takes ε ascending
    table = table_cells(case, model, data, weights, [epsilon / s for s in order], steps, nbeta_scales=list(order))
    return dict(case=case.name, truth=case.truth, epsilon=epsilon, steps=steps, scales=list(scales), table=table,
                seconds=time.perf_counter() - start)


def show(record: dict) -> None:
    print(f"{record['case']}, true λ {record['truth']:g}, ε {record['epsilon']:g} at nβ, {record['steps']} steps, "
          f"{record['seconds']:.0f} s")
    base = min(cell["nbeta"] for cell in record["table"].values())
    for eps, cell in sorted(record["table"].items(), key=lambda item: -float(item[0])):
        found = last_window_answer(float(eps), cell)
        row = "  ".join(f"{float(t):.3g}:{v[0]:.3f}" for t, v in sorted(cell["row"].items(), key=lambda i: float(i[0]))[-5:])
        value = "still moving" if found["estimate"] is None else f"{found['estimate']:.3f} ({found['estimate'] / record['truth'] - 1:+.1%}, {found['status']})"
        print(f"  nβ ×{cell['nbeta'] / base:<3.3g} ε {float(eps):.3g}, "
              f"MALA {cell['mala']:.3f}: {value}; last windows {row}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("widths")
    parser.add_argument("rank", type=int)
    parser.add_argument("epsilon", type=float, help="the step size at nβ")
    parser.add_argument("--steps", type=int, default=160_000)
    parser.add_argument("--scales", type=lambda s: tuple(float(v) for v in s.split(",")), default=SCALES)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    key = dict(case=f"DLN {widths} r{args.rank}", epsilon=args.epsilon, steps=args.steps, scales=list(args.scales))
    show(stored_or_run(args.out, key, lambda: nbeta_table(widths, args.rank, args.epsilon, args.steps, args.scales)))


if __name__ == "__main__":
    main()
