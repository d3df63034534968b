"""Ground-truth validation with settings chosen by the data (no per-case step size anywhere): every
case runs `grokscope validate` (ε by the calibration rule, chains continued until settled) for
each sampler kernel. Resumable: rows already in --out are kept and skipped, each new row is
appended as soon as it is done. Prints the markdown table of docs/validation.md and the criteria
of the settled-estimate issue (silent misses, flagged misses, mean |error| over ok cases, share ok).

    python scripts/validation_samplers.py --held-out --out docs/validation/held_out.jsonl    # the first fixed family
    python scripts/validation_samplers.py --held-out --seed 20261204 --out docs/validation/held_out_2.jsonl  # the second
    python scripts/validation_samplers.py --held-out --seed 20261205 --samplers rmsprop_sgld --rmsprop-adapt-steps 500 \
        --out docs/validation/held_out_3.jsonl                                      # the third: the fixed preconditioner
    python scripts/validation_samplers.py --held-out --seed 20261206 --samplers sgld \
        --out docs/validation/held_out_4.jsonl                                      # the fourth: slow cells count as moving
    python scripts/validation_samplers.py --held-out --seed 20261206 --samplers rmsprop_sgld --rmsprop-adapt-steps 500 \
        --out docs/validation/held_out_4_rmsprop.jsonl                              # the same, the fixed preconditioner
    python scripts/validation_samplers.py --held-out --seed 20261207 --samplers sgld --start-spread 0.1 \
        --out docs/validation/held_out_5.jsonl                                      # the fifth: chains started apart
    python scripts/validation_samplers.py --held-out --seed 20261209 --samplers sgld \
        --out docs/validation/held_out_7.jsonl                                      # the seventh: resolved teachers
    python scripts/validation_samplers.py --held-out --seed 20261211 --samplers sgld \
        --out docs/validation/held_out_9.jsonl                                      # the ninth: a later run past an imprecise one
    python scripts/validation_samplers.py --held-out --seed 20261212 --samplers sgld \
        --out docs/validation/held_out_10.jsonl                                     # the tenth: settling time shown by a late cell
    python scripts/validation_samplers.py --held-out --seed 20261213 --samplers sgld \
        --out docs/validation/held_out_11.jsonl                                     # the eleventh: the deciding cells run longer (withdrawn)
    python scripts/validation_samplers.py --held-out --seed 20261214 --samplers sgld --steps 80000 --max-steps 80000 \
        --out docs/validation/held_out_12.jsonl                                     # the twelfth: one block of 80,000 steps per cell
    python scripts/validation_samplers.py --crossing-family 1 2 --samplers sgld --out docs/validation/crossings.jsonl
    python scripts/validation_samplers.py --crossing-family 3 4 --samplers sgld --out docs/validation/crossings_2.jsonl
    python scripts/validation_samplers.py --quick --samplers sgld --out /tmp/dev.jsonl       # the development suite
    python scripts/validation_samplers.py --cases dln:10,8,2,6:1 dln:7,4,2:2 --samplers sgld --steps 80000 --max-steps 80000 \
        --out docs/validation/one_block_development.jsonl                           # every cell one block of 80,000 steps
    python scripts/validation_samplers.py --from docs/validation/held_out.jsonl               # the table again
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import torch

from grokscope.atomic import json_safe
from grokscope.llc.validation.suite import HELD_OUT_SEED, crossing_family, dln_case, held_out, parse_case, run_case, suite


def _short(flags: list[str]) -> str:
    return ", ".join(flag.split(":")[0] for flag in flags) or "—"


def _kernel(row: dict) -> str:
    """The kernel in brackets where the calibration's fallback gave the estimate, else nothing."""
    kernel = row.get("kernel", row["sampler"])
    return "" if kernel == row["sampler"] else f" ({kernel})"


def _stored(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _with_estimand(rows: list[dict]) -> list[dict]:
    """Rows stored before the finite-n estimand was recorded get it now (it needs no sampling)."""
    known = {case.name: case for case in suite(grid=True) + held_out() + crossing_family((1, 2, 3, 4))}
    for row in rows:
        case = known.get(row["case"])
        if "estimand" not in row and case is not None and case.estimand is not None:
            model, data = case.build()
            row["estimand"] = case.estimand(*data, row["calibration"]["default_nbeta"], row["settings"]["gamma"])
            row["estimand_error"] = None if row["estimate"] is None else row["estimate"] / row["estimand"] - 1
    return rows


def measured(args) -> list[dict]:
    """Every (case, sampler) row: those stored in --out, then the rest run now and appended."""
    if args.stored:
        return _with_estimand([row for path in args.stored for row in _stored(Path(path))])
    out = Path(args.out)
    rows = _with_estimand(_stored(out))
    done = {(row["case"], row["sampler"]) for row in rows}
    if args.cases:
        cases = [parse_case(c) for c in args.cases]
    elif args.crossing_family:
        cases = crossing_family(tuple(args.crossing_family))
    else:
        cases = held_out(args.seed) if args.held_out else suite(quick=args.quick, grid=args.grid)
    out.parent.mkdir(parents=True, exist_ok=True)
    first, every = args.shard
    for case in cases[first::every]:
        for sampler in args.samplers:
            if (case.name, sampler) in done:
                continue
            rmsprop = {"rmsprop_eps": args.rmsprop_eps, "rmsprop_adapt_steps": args.rmsprop_adapt_steps}
            overrides = ({"sampler": sampler} | (rmsprop if sampler == "rmsprop_sgld" else {})
                         | ({"n_steps": args.steps} if args.steps else {})
                         | ({"max_steps": args.max_steps} if args.max_steps else {})
                         | ({"start_spread": args.start_spread} if args.start_spread else {}))
            row = run_case(case, auto=True, **overrides) | {"sampler": sampler}
            with out.open("a") as stream:
                stream.write(json.dumps(json_safe(row)) + "\n")
            rows.append(row)
            print(f"{case.name} {sampler}: {row['estimate']} {row['status']} ({row['seconds']:.0f} s)", file=sys.stderr, flush=True)
    return rows


def criteria(rows: list[dict]) -> str:
    """The settled-estimate issue's four criteria over these rows."""
    ok = [r for r in rows if r["status"] == "ok"]
    silent = [r["case"] for r in ok if abs(r["relative_error"]) > 0.1]
    flagged = [r["case"] for r in rows if r["relative_error"] is not None and abs(r["relative_error"]) > 0.2 and r["status"] == "ok"]
    mean = 100 * sum(abs(r["relative_error"]) for r in ok) / len(ok) if ok else float("nan")
    return (f"{len(ok)} of {len(rows)} ok ({100 * len(ok) / max(len(rows), 1):.0f}%, target ≥ 80%); mean |error| over ok "
            f"{mean:.1f}% (target ≤ 10%); ok with |error| > 10%: {silent or 'none'}; ok with |error| > 20%: {flagged or 'none'}")


def resolved(row: dict) -> bool:
    """Whether the row's truth is the target at this n: not a deep linear teacher with a direction
    the data do not resolve (suite.Case.resolved_truth; docs/validation.md)."""
    network = _dln(row["case"])
    return network is None or dln_case(*network).resolved_truth is None


def against_estimand(rows: list[dict]) -> str:
    """The sampler's own error: settled estimates against the exact finite-n expectation they target."""
    known = [r for r in rows if r.get("estimand_error") is not None and r["status"] in ("ok", "imprecise")]
    errors = [abs(r["estimand_error"]) for r in known]
    return (f"{len(known)} settled with a computable estimand: mean |λ̂/estimand − 1| {100 * sum(errors) / len(errors):.1f}%, "
            f"largest {100 * max(errors):.1f}%; the estimand against λ: "
            + ", ".join(f"{r['case']} {100 * (r['estimand'] / r['true'] - 1):+.0f}%" for r in known)) if known else "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--held-out", dest="held_out", action="store_true", help="a fixed held-out family (docs/validation.md)")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="which held-out family: its seed (docs/validation.md)")
    parser.add_argument("--crossing-family", dest="crossing_family", type=int, nargs="+", metavar="DATA_SEED",
                        help="the normal crossings with powers up to 4 on these data seeds (docs/validation.md: 1 2, then 3 4)")
    parser.add_argument("--quick", action="store_true", help="development suite without the larger deep linear networks")
    parser.add_argument("--grid", action="store_true", help="development suite with every normal crossing with powers up to 3")
    parser.add_argument("--samplers", nargs="+", default=["sgld", "rmsprop_sgld"])
    parser.add_argument("--rmsprop-eps", dest="rmsprop_eps", type=float, default=1e-3, help="rmsprop_sgld's eps (default 1e-3)")
    parser.add_argument("--rmsprop-adapt-steps", dest="rmsprop_adapt_steps", type=int, default=0,
                        help="rmsprop_sgld's preconditioner fixed after this many steps (default 0: never)")
    parser.add_argument("--steps", type=int, default=None,
                        help="each case's first block of steps, before a cell may stop (default: its family's)")
    parser.add_argument("--max-steps", dest="max_steps", type=int, default=None,
                        help="each case's step cap (default: its family's, 8 × its first block)")
    parser.add_argument("--start-spread", dest="start_spread", type=float, default=None,
                        help="every second chain starts away from w* (llc/sampling/starts.py; default: all at w*)")
    parser.add_argument("--cases", nargs="+", help="only these cases (validate --case syntax, e.g. dln:10,10,10,10:5)")
    parser.add_argument("--shard", type=int, nargs=2, metavar=("I", "N"), default=(0, 1),
                        help="only every N-th case from the I-th (0-based): N processes, each with its own --out, then --from all")
    parser.add_argument("--out", default="validation_auto.jsonl", help="JSON lines, one per case and sampler (appended)")
    parser.add_argument("--from", dest="stored", nargs="+", help="print the table of stored rows")
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = measured(args)
    samplers = list(dict.fromkeys(row["sampler"] for row in rows))
    by_key = {(row["case"], row["sampler"]): row for row in rows}
    print("| case | true λ | " + " | ".join(f"`{s}`: λ̂ (error), status, ε, steps, s, reasons" for s in samplers) + " |")
    print("|" + " --- |" * (2 + len(samplers)))
    for name, truth in dict.fromkeys((row["case"], row["true"]) for row in rows):
        cells = []
        for sampler in samplers:
            row = by_key.get((name, sampler))
            if row is None:
                cells.append("not run")
            elif row["estimate"] is None:
                cells.append(f"none ({_short(row['flags'])}), {row['seconds']:.0f} s")
            else:
                against = "" if row.get("estimand") is None else f"; {100 * row['estimand_error']:+.1f}% vs the estimand {row['estimand']:.4g}"
                cells.append(f"{row['estimate']:.4g} ({100 * row['relative_error']:+.1f}%{against}), **{row['status']}**, "
                             f"{row['settings']['epsilon']:.2g}{_kernel(row)}, {row['steps_used']}, {row['seconds']:.0f} s, {_short(row['flags'])}")
        print(f"| {name} | {truth:.4g} | " + " | ".join(cells) + " |")
    for sampler in samplers:
        mine = [r for r in rows if r["sampler"] == sampler]
        for label, part in (("all", mine), ("deep linear networks", [r for r in mine if r["case"].startswith("DLN")]),
                            ("intermediate ranks", [r for r in mine if r["case"].startswith("DLN") and _intermediate(r["case"])]),
                            ("deep linear teachers the data resolve", [r for r in mine if r["case"].startswith("DLN") and resolved(r)])):
            if part:
                print(f"{sampler}, {label}: {criteria(part)}")
        print(f"{sampler}, against the finite-n estimand: {against_estimand(mine)}")


def _dln(name: str) -> tuple[list[int], int] | None:
    """(widths, rank) of a case named "DLN [w0, ..., wL] rR", else None."""
    match = re.fullmatch(r"DLN (\[[\d, ]+\]) r(\d+)", name)
    return None if match is None else (json.loads(match.group(1)), int(match.group(2)))


def _intermediate(name: str) -> bool:
    """A DLN case of rank strictly between 0 and the narrowest width."""
    widths, rank = _dln(name)
    return 0 < rank < min(widths)


if __name__ == "__main__":
    main()
