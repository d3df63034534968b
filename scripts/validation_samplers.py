"""The ground-truth suite (docs/validation.md) with settings chosen by the data (no per-case step
size anywhere): every case runs `grokscope validate --auto` for each sampler kernel, side by side.
Prints the markdown table of docs/validation.md and writes every row (with its calibration
evidence) as JSON lines.

    python scripts/validation_samplers.py                               # sgld and rmsprop_sgld, every case
    python scripts/validation_samplers.py --quick --samplers rmsprop_sgld --out /tmp/rows.jsonl
    python scripts/validation_samplers.py --samplers sgld --cases dln:10,10,10,10:5 dln:10,20,10:0
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from grokscope.llc.validate import parse_case, run_case, suite
from grokscope.store import json_safe


def _short(flags: list[str]) -> str:
    return ", ".join(flag.split(":")[0] for flag in flags) or "healthy"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="without the larger deep linear networks")
    parser.add_argument("--grid", action="store_true", help="every normal crossing with powers up to 3")
    parser.add_argument("--samplers", nargs="+", default=["sgld", "rmsprop_sgld"])
    parser.add_argument("--cases", nargs="+", help="only these cases (validate --case syntax, e.g. dln:10,10,10,10:5)")
    parser.add_argument("--out", default="validation_auto.jsonl", help="JSON lines, one per case and sampler")
    args = parser.parse_args()
    torch.set_num_threads(2)
    print("| case | true λ | " + " | ".join(f"`{s}`: λ̂ (error), ε, MALA, flags" for s in args.samplers) + " |")
    print("|" + " --- |" * (2 + len(args.samplers)))
    errors: dict[str, list[float]] = {s: [] for s in args.samplers}
    silent_misses: dict[str, list[str]] = {s: [] for s in args.samplers}
    with open(args.out, "w") as out:
        for case in [parse_case(c) for c in args.cases] if args.cases else suite(quick=args.quick, grid=args.grid):
            cells = []
            for sampler in args.samplers:
                start = time.perf_counter()
                row = run_case(case, auto=True, sampler=sampler)
                row["seconds"] = time.perf_counter() - start
                out.write(json.dumps(json_safe(row | {"sampler": sampler})) + "\n")
                out.flush()
                if row["estimate"] is None:
                    cells.append(f"diverged ({_short(row['flags'])})")
                    continue
                error = row["relative_error"]
                mala = "—" if row["mala_acceptance"] is None else f"{row['mala_acceptance']:.2f}"
                cells.append(f"{row['estimate']:.4g} ({100 * error:+.1f}%), {row['settings']['epsilon']:.2g}, {mala}, "
                             f"{_short(row['flags'])} [{row['seconds']:.0f} s]")
                if case.name.startswith("DLN"):
                    errors[sampler].append(abs(error))
                if abs(error) > 0.2 and not row["flags"]:
                    silent_misses[sampler].append(case.name)
            print(f"| {case.name} | {case.truth:.4g} | " + " | ".join(cells) + " |", flush=True)
    for sampler, values in errors.items():
        if values:
            print(f"{sampler}: DLN mean |error| {100 * sum(values) / len(values):.1f}%, worst {100 * max(values):.1f}% "
                  f"over {len(values)} cases; misses (> 20%) with every flag green: {silent_misses[sampler] or 'none'}")


if __name__ == "__main__":
    main()
