"""The ground-truth suite (docs/validation.md) with each sampler kernel, side by side.

Every case keeps the settings of src/grokscope/llc/validate.py; a variant SAMPLER:SCALE runs the
kernel at SCALE × the case's ε (RMSprop's preconditioner G = 1/(√V + 0.1) reaches 10 where gradients
vanish, so its ε/10 is the move plain SGLD makes at ε). Prints the markdown table of docs/validation.md.

    python scripts/validation_samplers.py                                  # sgld:1 rmsprop_sgld:1 rmsprop_sgld:0.1
    python scripts/validation_samplers.py --quick --variants rmsprop_sgld:0.1
"""

from __future__ import annotations

import argparse
import time

import torch

from grokscope.llc.validate import run_case, suite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="without the larger deep linear networks")
    parser.add_argument("--variants", nargs="+", default=["sgld:1", "rmsprop_sgld:1", "rmsprop_sgld:0.1"])
    args = parser.parse_args()
    torch.set_num_threads(2)
    variants = [(v.split(":")[0], float(v.split(":")[1])) for v in args.variants]
    labels = [f"{s} (ε×{scale:g})" for s, scale in variants]
    print("| case | true λ | " + " | ".join(labels) + " |")
    print("|" + " --- |" * (2 + len(variants)))
    errors: dict[str, list[float]] = {label: [] for label in labels}
    for case in suite(quick=args.quick):
        cells = []
        for label, (sampler, scale) in zip(labels, variants):
            start = time.perf_counter()
            row = run_case(case, sampler=sampler, epsilon=case.settings["epsilon"] * scale)
            if row["estimate"] is None:
                cells.append("diverged")
                continue
            cells.append(f"{row['estimate']:.4g} ± {row['std']:.2g} ({100 * row['rel_error']:+.1f}%, {time.perf_counter() - start:.0f} s)")
            if case.name.startswith("DLN"):
                errors[label].append(abs(row["rel_error"]))
        print(f"| {case.name} | {case.truth:.4g} | " + " | ".join(cells) + " |", flush=True)
    for label, values in errors.items():
        if values:
            print(f"{label}: DLN mean |error| {100 * sum(values) / len(values):.1f}%, worst {100 * max(values):.1f}%")


if __name__ == "__main__":
    main()
