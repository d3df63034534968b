"""SGLD preconditioned by the curvature at w*: a prototype on deep linear networks
(docs/validation.md, "The quadratic floor": a preconditioner for the flat directions).

Plain SGLD's step ε is capped by the stiffest mode of the Hessian, so the flat directions, where
the function g of the splitting lemma lives, move by √ε a step and a chain sits at the quadratic
floor for a long time. With the constant preconditioner

    M = ε (I + ε nβ H / η)⁻¹        (H: the full-batch Gauss-Newton matrix at w*)

a step is w ← w − ½ M ∇U(w) + N(0, M), U = nβ L_B + γ/2 ‖w − w*‖²: the same target (a constant
preconditioner leaves the Langevin diffusion's stationary law alone; Roberts & Stramer 2002), flat
directions move with step ε, and a mode of curvature h with step εnβh/(1 + εnβh/η) ≤ η in its own
units, so stiffness no longer caps ε. Every tenth step the minibatch MALA acceptance of the
preconditioned proposal is measured. λ̂ is nβ·(mean minibatch loss over [T/2, T]) − L_n(w*) per
chain, averaged, beside its value over [T/4, T/2].

    python scripts/curvature_preconditioned.py 4,8,2,9,10,12 1 --out docs/validation/preconditioned_development.jsonl
    python scripts/curvature_preconditioned.py --from docs/validation/preconditioned_development.jsonl

Rows already in --out (same network, ε, η, steps) are skipped, so a run resumes.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from grokscope.llc.diagnostics.quadratic import gauss_newton, quadratic_floor
from grokscope.llc.validation.suite import dln_case
from grokscope.thresholds import SETTLE_TOLERANCE
from time_table import stored_or_run

MALA_EVERY = 10


def preconditioned_run(widths: list[int], rank: int, epsilon: float, eta: float, steps: int, chains: int = 8,
                       batch: int = 500, gamma: float = 1.0, seed: int = 0) -> dict:
    """One run of ``chains`` chains from w*; the case's data, m = ``batch``, nβ = n/ln n."""
    start = time.perf_counter()
    case = dln_case(widths, rank)
    model, (x, y) = case.build()
    params = dict(model.named_parameters())
    names = list(params)
    shapes = [params[n].shape for n in names]
    n = len(x)
    nbeta = n / math.log(n)
    curvature, basis = torch.linalg.eigh(gauss_newton(model, params, names, x, y, "mse"))
    curvature = curvature.clamp(min=0)
    scale = epsilon / (1 + epsilon * nbeta * curvature / eta)  # M's eigenvalues
    precondition = ((basis * scale) @ basis.T).float()
    root = ((basis * scale.sqrt()) @ basis.T).float()
    inverse = ((basis / scale) @ basis.T).float()
    anchor = torch.cat([params[n].detach().flatten() for n in names])

    def losses(weights: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        out = xb
        for part, shape in zip(weights.split([math.prod(s) for s in shapes], dim=1), shapes):
            out = out @ part.view(-1, *shape).transpose(1, 2)
        return (out - yb).square().flatten(1).mean(1)

    with torch.no_grad():
        init = float(losses(anchor[None], x[None], y[None])[0])
    generator = torch.Generator().manual_seed(seed)
    weights = anchor.repeat(chains, 1)
    trace, accepted = np.full((steps, chains), np.nan), []
    for step in range(steps):
        rows = torch.randint(0, n, (chains, batch), generator=generator)
        xb, yb = x[rows], y[rows]

        def potential(at: torch.Tensor):
            leaf = at.detach().requires_grad_(True)
            loss = losses(leaf, xb, yb)
            value = nbeta * loss + 0.5 * gamma * (leaf - anchor).square().sum(1)
            return loss.detach(), value.detach(), torch.autograd.grad(value.sum(), leaf)[0]

        loss, value, grad = potential(weights)
        proposal = weights - 0.5 * grad @ precondition + torch.randn(weights.shape, generator=generator) @ root
        if step % MALA_EVERY == 0:
            _, value_after, grad_after = potential(proposal)
            forward = proposal - weights + 0.5 * grad @ precondition
            backward = weights - proposal + 0.5 * grad_after @ precondition
            log_q = lambda d: 0.5 * ((d @ inverse) * d).sum(1)  # noqa: E731
            accepted.append(float(torch.exp(torch.clamp(value - value_after - log_q(backward) + log_q(forward), max=0)).mean()))
        trace[step] = loss.numpy()
        if not np.isfinite(trace[step]).all():
            break
        weights = proposal

    def window(lo: int, hi: int) -> list[float]:
        return (nbeta * (np.nanmean(trace[lo:hi], axis=0) - init)).tolist()

    return dict(case=case.name, truth=case.truth, floor=quadratic_floor(curvature.numpy(), nbeta, gamma), epsilon=epsilon,
                eta=eta, steps=steps, llc_per_chain=window(steps // 2, steps), previous_window=window(steps // 4, steps // 2),
                mala=float(np.mean(accepted)), seconds=time.perf_counter() - start)


def show(record: dict) -> None:
    now, before = np.array(record["llc_per_chain"]), np.array(record["previous_window"])
    print(f"{record['case']}: λ {record['truth']:g}, floor {record['floor']:.2f}; ε {record['epsilon']:.3g}, η {record['eta']:g}, "
          f"{record['steps']} steps: λ̂ {now.mean():.3f} ± {now.std(ddof=1) / math.sqrt(len(now)):.3f} "
          f"({now.mean() / record['truth'] - 1:+.1%}), [T/4, T/2] {before.mean():.3f}, MALA {record['mala']:.3f}, {record['seconds']:.0f} s")


MALA_BAND = 0.95
STEPS = (4.2e-7, 8.3e-7, 1.67e-6, 3.3e-6)  # the flat directions' ε tried for each network


def floor_verdict(records: list[dict]) -> dict:
    """For one network's runs (ε in STEPS): the largest ε with MALA ≥ MALA_BAND, its λ̂ and a verdict
    on plain SGLD's estimate at the quadratic floor: "plateau" when this λ̂ exceeds the floor by more
    than SETTLE_TOLERANCE and two standard errors, "below the floor" when it lies that far below,
    else "at the floor" (docs/validation.md)."""
    band = [r for r in records if r["mala"] >= MALA_BAND]
    if not band:
        return dict(epsilon=None, llc=None, verdict="no ε in the band")
    chosen = max(band, key=lambda r: r["epsilon"])
    values = np.array(chosen["llc_per_chain"])
    llc, se = float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))
    gap = llc - chosen["floor"]
    verdict = ("plateau" if gap > max(SETTLE_TOLERANCE * chosen["floor"], 2 * se)
               else "below the floor" if -gap > max(SETTLE_TOLERANCE * chosen["floor"], 2 * se) else "at the floor")
    return dict(epsilon=chosen["epsilon"], llc=llc, verdict=verdict)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("widths", nargs="?")
    parser.add_argument("rank", nargs="?", type=int)
    parser.add_argument("epsilon", nargs="?", type=float, help="the step of the flat directions (default: each of STEPS)")
    parser.add_argument("--eta", type=float, default=0.005, help="the largest step of a stiff mode, in its own units")
    parser.add_argument("--steps", type=int, default=32_000)
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
    for epsilon in [args.epsilon] if args.epsilon else STEPS:
        key = dict(case=f"DLN {widths} r{args.rank}", epsilon=epsilon, eta=args.eta, steps=args.steps)
        show(stored_or_run(args.out, key, lambda: preconditioned_run(widths, args.rank, epsilon, args.eta, args.steps)))


if __name__ == "__main__":
    main()
