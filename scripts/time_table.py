"""λ̂ of a deep linear network against step size ε and time T = ε × steps (docs/validation.md,
"λ̂ against step size and time").

Every cell of the rule's grid (ε₀·2^j, j = −3..3, or its --cells smallest) runs one block of
--steps steps; λ̂(ε, T) is each
chain's nβ·(mean loss over the steps that cover the time [T/2, T]) − L_n(w*), averaged over the
chains, with its standard error. The chains at every ε discretise the same Langevin diffusion, so
at equal T the cells differ by step-size bias alone; along a row, λ̂ still rising with T is a
chain that has not settled (Roberts & Tweedie 1996).

    python scripts/time_table.py 12,6,2,6 1 1e-7 --out docs/validation/time_table_development.jsonl
    python scripts/time_table.py --held-out 20261215 --out docs/validation/held_out_13.jsonl
    python scripts/time_table.py --held-out 20261216 --rule mala-band --steps 160000 --cells 4 \
        --out docs/validation/held_out_14.jsonl

With --held-out, every network of that family runs, its grid placed by the rule's bracket
(llc/tuning/calibrate.py), and a candidate rule (--rule) is judged on the four criteria.
Rows already in --out are skipped, so a run resumes where it stopped.

Equal-time runs (:func:`answer`; docs/validation.md, "A thirteenth family"): counting up in ε
from the smallest cell, a run of cells, each with MALA acceptance ≥ MALA_MIN_ACCEPTANCE and no
diverged chain, each agreeing at equal time with the cell before it and with the run's first (at
that cell's longest time T; FLAT_TOLERANCE and two standard errors); the run needs two cells. Its
last cell ran the longest time of the unbiased cells: its λ̂ over [T/2, T] is the answer when it is
flat against its λ̂ over [T/4, T/2], else there is none (still moving). A smaller cell's plateau is
never the answer.

The MALA band (:func:`band_answer`; docs/validation.md, "The MALA band"): the largest cell with no
diverged chain whose MALA acceptance over its whole block is ≥ MALA_BAND; its λ̂ over [T/2, T] at
its longest time is the answer when flat against its λ̂ over [T/4, T/2], else there is none.

Either answer's status is :func:`window_status`'s.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from grokscope.llc.config import sgld_config
from grokscope.llc.diagnostics.convergence import rhat
from grokscope.llc.diagnostics.settling import settle
from grokscope.llc.estimator import sample_llc
from grokscope.llc.tuning.calibrate import GRID_OFFSETS, _bracket
from grokscope.llc.validation.suite import Case, dln_case, held_out_family
from grokscope.thresholds import ESS_MIN, FLAT_TOLERANCE, MALA_MIN_ACCEPTANCE, MCSE_MAX_FRACTION, R_HAT_MAX

SHORTEST_WINDOW = 200  # steps: a shorter [T/2, T] is too noisy to read
MALA_BAND = 0.95  # the MALA band's acceptance (docs/validation.md, "The MALA band")


def time_table(case: Case, epsilon: float | None, steps: int, cells: int = len(GRID_OFFSETS)) -> dict:
    """The grid ε·GRID_OFFSETS around ``epsilon`` (None: the rule's bracket places it), its ``cells``
    smallest cells, one block of ``steps`` each: λ̂(ε, T) with standard errors, and each cell's
    diagnostics over its last window."""
    start = time.perf_counter()
    model, data = case.build()
    config = sgld_config(**case.settings | dict(n_steps=steps, max_steps=steps, mala=True))
    weights = {n: p.detach() for n, p in model.named_parameters()}
    if epsilon is None:
        epsilon = _bracket(model, data, weights, config, "mse", 0, None, False)["epsilon"]
    table = table_cells(case, model, data, weights, [epsilon * offset for offset in GRID_OFFSETS[:cells]], steps)
    return dict(case=case.name, truth=case.truth, steps=steps, epsilon=epsilon, table=table,
                seconds=time.perf_counter() - start)


def table_cells(case: Case, model, data, weights: dict, epsilons: list[float], steps: int,
                nbeta_scales: list[float] | None = None) -> dict:
    """One block of ``steps`` at each of ``epsilons`` (ascending), batched: each cell's λ̂(ε, T) over
    the windows [T/2, T] its chains cover, and its diagnostics over its last window. A cell's
    ``nbeta_scales`` entry multiplies its nβ (default 1)."""
    config = sgld_config(**case.settings | dict(n_steps=steps, max_steps=steps, mala=True))
    base, chains = config.resolve_nbeta(len(data[0]))[0], config.chains
    nbetas = [base * scale for scale in nbeta_scales or [1.0] * len(epsilons)]
    result = sample_llc(model, data, [weights] * len(epsilons), loss="mse", config=config, checkpoint_ids=[0] * len(epsilons),
                        per_set=[dict(epsilon=e, nbeta=b) for e, b in zip(epsilons, nbetas)])
    losses = result.loss_draws.double().numpy()  # [steps, sets × chains]
    times = sorted({e * steps / 2**k for e in epsilons for k in range(12)})
    cells = {}
    for k, (eps, nbeta, entry) in enumerate(zip(epsilons, nbetas, result.entries)):
        own = losses[:, k * chains:(k + 1) * chains]
        row = {}
        for t in times:
            end = int(round(t / eps))
            if SHORTEST_WINDOW <= end <= entry.steps_used:
                per_chain = nbeta * (np.nanmean(own[end // 2:end], axis=0) - entry.init_loss)
                row[f"{t:.6g}"] = [float(np.nanmean(per_chain)), float(np.nanstd(per_chain, ddof=1) / math.sqrt(chains))]
        window = own[entry.steps_used // 2:entry.steps_used].T
        alive = window[np.isfinite(window).all(axis=1)]
        settled = settle(alive, entry.init_loss, nbeta, burn_in=0) if len(alive) > 1 else None
        cells[f"{eps:.6g}"] = dict(llc=entry.llc_mean, status=entry.status, mala=entry.mala_acceptance, nbeta=nbeta,
                                   diverged=entry.diverged_chains, row=row,
                                   window=None if settled is None else dict(
                                       r_hat=rhat(alive), r_hat_batch=settled.r_hat_batch,
                                       ess_batch=settled.ess_batch, mcse=settled.mcse))
    return cells


def _jump(reference: list[float], value: list[float]) -> bool:
    """Whether two λ̂ (mean, standard error) differ by more than FLAT_TOLERANCE and two standard errors.
    Unlike the rule's paired test (llc/tuning/calibrate.py), the errors add: windows at equal time
    cover different steps of each chain, so they share no minibatches or noise."""
    change = value[0] - reference[0]
    return abs(change) > FLAT_TOLERANCE * abs(reference[0]) and abs(change) > 2 * math.hypot(reference[1], value[1])


def answer(record: dict) -> dict:
    """The candidate rule (module docstring) on one time table."""
    cells = sorted((float(e), c) for e, c in record["table"].items())
    rows = [{float(t): v for t, v in c["row"].items() if v[0] is not None and math.isfinite(v[0])} for _, c in cells]
    longest = [max(row) if row else 0.0 for row in rows]
    run: list[int] = []
    for k, (_, cell) in enumerate(cells):
        if cell.get("diverged") or (cell["mala"] or 0.0) < MALA_MIN_ACCEPTANCE or not rows[k]:
            break
        if run and any(longest[j] not in rows[k] or _jump(rows[j][longest[j]], rows[k][longest[j]]) for j in (run[-1], run[0])):
            break  # a time this cell's window cannot cover is no evidence of agreement
        run.append(k)
    if len(run) < 2:
        return dict(estimate=None, status="none", epsilon=None, why="no two cells agree at equal time")
    found = last_window_answer(*cells[run[-1]])
    if found["estimate"] is not None:
        found["why"] = f"run ε {cells[run[0]][0]:.3g} to {found['why']}"
    return found


def band_answer(record: dict) -> dict:
    """The MALA band (module docstring): the largest cell at acceptance ≥ MALA_BAND, flat in T."""
    band = [(float(e), c) for e, c in record["table"].items() if in_band(c)]
    if not band:
        return dict(estimate=None, status="none", epsilon=None, why=f"no cell at MALA acceptance ≥ {MALA_BAND} without divergence")
    return last_window_answer(*max(band, key=lambda found: found[0]))


def in_band(cell: dict) -> bool:
    """Whether a cell has no diverged chain and MALA acceptance ≥ MALA_BAND over its whole block."""
    return not cell.get("diverged") and (cell["mala"] or 0.0) >= MALA_BAND


def last_window_answer(epsilon: float, cell: dict) -> dict:
    """One cell's λ̂ over [T/2, T] at its longest time T when it agrees with its λ̂ over [T/4, T/2]
    (:func:`_jump`), with :func:`window_status`; else no answer (still moving)."""
    row = {float(t): v for t, v in cell["row"].items() if v[0] is not None and math.isfinite(v[0])}
    t = max(row)
    value, half = row[t], row.get(t / 2)
    if half is None or _jump(half, value):
        return dict(estimate=None, status="none", epsilon=epsilon,
                    why=f"ε {epsilon:.3g} (MALA {cell['mala']:.3f}) still moving: {half and half[0]:.4g} → {value[0]:.4g} at T {t:.3g}")
    return dict(estimate=value[0], status=window_status(cell, value[0]), epsilon=epsilon,
                why=f"ε {epsilon:.3g}, MALA {cell['mala']:.3f}, T {t:.3g}")


RULES = {"equal-time": answer, "mala-band": band_answer}


def window_status(cell: dict, value: float) -> str:
    """A cell's answer's status from its last window: unreliable when R-hat of its draws or of their
    batch means exceeds R_HAT_MAX, imprecise when the batch-means ESS is below ESS_MIN or the MCSE
    above MCSE_MAX_FRACTION of λ̂, else ok."""
    w = cell.get("window")
    if w is None:
        return "unchecked"  # a table stored before the window's diagnostics were
    if max(w["r_hat"], w["r_hat_batch"]) > R_HAT_MAX:
        return "unreliable"
    if w["ess_batch"] < ESS_MIN or w["mcse"] > MCSE_MAX_FRACTION * abs(value):
        return "imprecise"
    return "ok"


def show(record: dict) -> None:
    times = sorted({float(t) for cell in record["table"].values() for t in cell["row"]})
    print(f"{record['case']}, true λ {record['truth']:g}; λ̂(ε, T), T = ε × steps:")
    print("ε \\ T    " + " ".join(f"{t:8.3g}" for t in times))
    for eps, cell in record["table"].items():
        values = {float(t): v[0] for t, v in cell["row"].items()}
        print(f"{float(eps):8.3g} " + " ".join(f"{values[t]:8.3f}" if values.get(t) is not None else " " * 8 for t in times))


def judge(records: list[dict], rule=answer) -> None:
    """Each network's answer under ``rule``, then the four criteria (docs/validation.md)."""
    errors = []
    for record in records:
        found = rule(record)
        error = None if found["estimate"] is None else found["estimate"] / record["truth"] - 1
        print(f"| {record['case']} | {record['truth']:g} | " + ("none" if error is None else f"{found['estimate']:.4g} ({error:+.1%})")
              + f", {found['status']} | {found['why']} | " + (f"{record['seconds']:.0f} s |" if "seconds" in record else "- |"))
        if found["status"] == "ok":
            errors.append(error)
    misses = [e for e in errors if abs(e) > 0.10]
    print(f"{len(errors)} of {len(records)} ok ({len(errors) / len(records):.0%}, target ≥ 80%); mean |error| over ok "
          + (f"{np.mean(np.abs(errors)):.1%}" if errors else "-") + " (target ≤ 10%); ok with |error| > 10%: "
          + (", ".join(f"{e:+.1%}" for e in misses) or "none") + f"; ok with |error| > 20%: {sum(abs(e) > 0.2 for e in errors)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("widths", nargs="?", help="the network's widths, e.g. 12,6,2,6")
    parser.add_argument("rank", nargs="?", type=int)
    parser.add_argument("epsilon", nargs="?", type=float, help="ε₀, the grid's middle (default: the rule's bracket)")
    parser.add_argument("--held-out", type=int, metavar="SEED", help="every network of this fixed family, then the criteria")
    parser.add_argument("--steps", type=int, default=80_000)
    parser.add_argument("--cells", type=int, default=len(GRID_OFFSETS), choices=range(2, len(GRID_OFFSETS) + 1),
                        help="run only the grid's smallest cells")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--from", dest="source", type=Path, help="judge the tables stored in this file, running nothing")
    parser.add_argument("--rule", choices=RULES, default="equal-time", help="the candidate rule judged")
    args = parser.parse_args()
    if args.source:
        judge([json.loads(line) for line in args.source.read_text().splitlines()], RULES[args.rule])
        return
    records = resumable(cases_of(args, parser), args.out, "steps", args.steps,
                        lambda case: time_table(case, args.epsilon, args.steps, args.cells))
    if args.held_out is None:
        show(records[0])
    judge(records, RULES[args.rule])


def cases_of(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[Case]:
    """The networks named on the command line: a fixed family (--held-out) or WIDTHS RANK."""
    if args.held_out is not None:
        return [dln_case(w, r) for w, r in held_out_family(args.held_out)]
    if args.widths and args.rank is not None:
        return [dln_case([int(w) for w in args.widths.split(",")], args.rank)]
    parser.error("give WIDTHS RANK, --held-out SEED or --from FILE")


def resumable(cases: list[Case], out: Path | None, key: str, value: int, run) -> list[dict]:
    """Each case's record: the one stored in ``out`` with the same ``key`` (a budget), else ``run(case)``
    (:func:`stored_or_run`)."""
    return [stored_or_run(out, {"case": case.name, key: value}, lambda case=case: run(case)) for case in cases]


def stored_or_run(out: Path | None, key: dict, run) -> dict:
    """The record stored in ``out`` whose fields match ``key``, else ``run()``, appended to ``out`` as
    soon as it is done, so an interrupted run resumes where it stopped."""
    done = [json.loads(line) for line in out.read_text().splitlines()] if out and out.exists() else []
    record = next((r for r in done if all(r.get(k) == v for k, v in key.items())), None)
    if record is None:
        record = run()
        if out:
            with out.open("a") as stream:
                stream.write(json.dumps(record) + "\n")
    return record


if __name__ == "__main__":
    main()
