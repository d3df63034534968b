"""Do the health flags catch the errors that passed every check before? The cases the calibration
issue found (docs/validation.md, "The flags on known failures"), each estimated at the step size
that was tried by hand, with its error against the true λ and the flags it now carries.

    python scripts/health_flags.py
"""

from __future__ import annotations

import torch

from grokscope.llc.validation.suite import parse_case, run_case

CASES = [  # (case, epsilon, n_steps): the hand-picked settings that went wrong
    ("dln:10,10,10,10:10", 5e-6, 10_000),
    ("dln:5,3,5:1", 5e-6, 10_000),
    ("dln:5,3,5:1", 5e-7, 10_000),
]


def main() -> None:
    torch.set_num_threads(2)
    print("| case | ε | true λ | λ̂ (error) | MALA | R-hat | flags |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for spec, epsilon, steps in CASES:
        row = run_case(parse_case(spec), auto=False, epsilon=epsilon, n_steps=steps)
        flags = "; ".join(flag.split(":")[0] for flag in row["flags"]) or "none"
        print(f"| {row['case']} | {epsilon:g} | {row['true']:g} | {row['estimate']:.3g} ({100 * row['relative_error']:+.0f}%) | "
              f"{row['mala_acceptance']:.2f} | {row['r_hat']:.3f} | {flags} |", flush=True)


if __name__ == "__main__":
    main()
