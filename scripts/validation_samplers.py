"""The ground-truth suite (docs/validation.md) with each sampler kernel, side by side.

Every case keeps the settings of src/grokscope/llc/validate.py (the same ε for both kernels);
prints the markdown table of docs/validation.md's sampler comparison.

    python scripts/validation_samplers.py            # every case (about 10 minutes on 2 cores)
    python scripts/validation_samplers.py --quick    # without the larger deep linear networks
"""

from __future__ import annotations

import argparse
import time

import torch

from grokscope.llc.kernels import KERNELS
from grokscope.llc.validate import run_case, suite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    samplers = list(KERNELS)
    header = " | ".join(f"{s} λ̂ ± std | {s} error" for s in samplers)
    print(f"| case | true λ | {header} |")
    print("|" + " --- |" * (2 + 2 * len(samplers)))
    errors: dict[str, list[float]] = {s: [] for s in samplers}
    for case in suite(quick=args.quick):
        cells = []
        for sampler in samplers:
            start = time.perf_counter()
            row = run_case(case, sampler=sampler)
            if row["estimate"] is None:
                cells += ["diverged", "—"]
                continue
            cells += [f"{row['estimate']:.4g} ± {row['std']:.2g}", f"{100 * row['rel_error']:+.1f}% ({time.perf_counter() - start:.0f} s)"]
            if case.name.startswith("DLN"):
                errors[sampler].append(abs(row["rel_error"]))
        print(f"| {case.name} | {case.truth:.4g} | " + " | ".join(cells) + " |", flush=True)
    for sampler, values in errors.items():
        if values:
            print(f"{sampler}: DLN mean |error| {100 * sum(values) / len(values):.1f}%, worst {100 * max(values):.1f}%")


if __name__ == "__main__":
    main()
