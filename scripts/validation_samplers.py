"""The ground-truth suite (docs/validation.md) with settings chosen by the data (no per-case step
size anywhere): every case runs `grokscope validate --auto` for each sampler kernel, side by side.
Prints the markdown table of docs/validation.md and writes every row (with its calibration
evidence) as JSON lines; `--from` prints the table of stored rows, each choice re-derived from its
stored grid by the current rule.

    python scripts/validation_samplers.py                               # sgld and rmsprop_sgld, every case
    python scripts/validation_samplers.py --quick --samplers rmsprop_sgld --out /tmp/rows.jsonl
    python scripts/validation_samplers.py --samplers sgld --cases dln:10,10,10,10:5 dln:10,20,10:0
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from grokscope.atomic import json_safe
from grokscope.llc.calibrate import Cell, recommend
from grokscope.llc.validate import parse_case, run_case, suite


def _short(flags: list[str]) -> str:
    return ", ".join(flag.split(":")[0] for flag in flags) or "healthy"


def rechoose(row: dict) -> dict:
    """A stored row with the choice re-derived from its stored grid by the current rule."""
    calibration = row["calibration"]
    cells = [Cell(**{name: cell[name] for name in Cell.__dataclass_fields__}) for cell in calibration["cells"]]
    chosen = recommend(cells, calibration["default_nbeta"], row["settings"]["gamma"])
    cell = next(c for c in cells if c.epsilon == chosen["epsilon"] and c.nbeta == chosen["nbeta"])
    error = None if cell.llc_mean is None else (cell.llc_mean - row["true"]) / row["true"]
    return row | {"estimate": cell.llc_mean, "std": cell.llc_std, "relative_error": error, "flags": cell.flags,
                  "mala_acceptance": cell.mala_acceptance, "settings": row["settings"] | {"epsilon": cell.epsilon}}


def measured(args) -> list[dict]:
    """Every (case, sampler) row: run now (written to --out as they come), or read from --from files."""
    if args.stored:
        return [rechoose(json.loads(line)) for path in args.stored for line in open(path) if line.strip()]
    rows = []
    with open(args.out, "w") as out:
        for case in [parse_case(c) for c in args.cases] if args.cases else suite(quick=args.quick, grid=args.grid):
            for sampler in args.samplers:
                start = time.perf_counter()
                row = run_case(case, auto=True, sampler=sampler) | {"sampler": sampler}
                row["seconds"] = time.perf_counter() - start
                out.write(json.dumps(json_safe(row)) + "\n")
                out.flush()
                rows.append(row)
                print(f"{case.name} {sampler}: {row['estimate']} ({row['seconds']:.0f} s)", file=sys.stderr, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="without the larger deep linear networks")
    parser.add_argument("--grid", action="store_true", help="every normal crossing with powers up to 3")
    parser.add_argument("--samplers", nargs="+", default=["sgld", "rmsprop_sgld"])
    parser.add_argument("--cases", nargs="+", help="only these cases (validate --case syntax, e.g. dln:10,10,10,10:5)")
    parser.add_argument("--out", default="validation_auto.jsonl", help="JSON lines, one per case and sampler")
    parser.add_argument("--from", dest="stored", nargs="+", help="print the table of stored rows (choices re-derived by the current rule)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = measured(args)
    samplers = list(dict.fromkeys(row["sampler"] for row in rows))
    cases = list(dict.fromkeys((row["case"], row["true"]) for row in rows))
    by_key = {(row["case"], row["sampler"]): row for row in rows}
    print("| case | true λ | " + " | ".join(f"`{s}`: λ̂ (error), ε, MALA, flags" for s in samplers) + " |")
    print("|" + " --- |" * (2 + len(samplers)))
    errors: dict[str, dict[str, float]] = {s: {} for s in samplers}
    silent_misses: dict[str, list[str]] = {s: [] for s in samplers}
    for name, truth in cases:
        cells = []
        for sampler in samplers:
            row = by_key.get((name, sampler))
            if row is None:
                cells.append("not run")
                continue
            if row["estimate"] is None:
                cells.append(f"diverged ({_short(row['flags'])})")
                continue
            error = row["relative_error"]
            mala = "—" if row["mala_acceptance"] is None else f"{row['mala_acceptance']:.2f}"
            cells.append(f"{row['estimate']:.4g} ({100 * error:+.1f}%), {row['settings']['epsilon']:.2g}, {mala}, {_short(row['flags'])}")
            if name.startswith("DLN"):
                errors[sampler][name] = abs(error)
            if abs(error) > 0.2 and not row["flags"]:
                silent_misses[sampler].append(name)
        print(f"| {name} | {truth:.4g} | " + " | ".join(cells) + " |")
    for sampler, values in errors.items():
        if values:
            worst = max(values, key=values.get)
            print(f"{sampler}: DLN mean |error| {100 * sum(values.values()) / len(values):.1f}%, worst {100 * values[worst]:.1f}% "
                  f"({worst}) over {len(values)} cases; misses (> 20%) with every flag green: {silent_misses[sampler] or 'none'}")
    shared = [name for name in errors[samplers[0]] if all(name in errors[s] for s in samplers)]
    if len(samplers) > 1 and shared:
        means = {s: 100 * sum(errors[s][n] for n in shared) / len(shared) for s in samplers}
        print(f"on the {len(shared)} DLN cases every sampler ran: " + ", ".join(f"{s} mean {m:.1f}%" for s, m in means.items()))


if __name__ == "__main__":
    main()
