"""A candidate rule for the step size, judged on deep linear networks (docs/validation.md, "The MALA
band"), chosen by a short probe: the largest step size whose MALA acceptance over the probe is at or
above MALA_BAND, then one long block. Not adopted: on rank-0 networks the probe's acceptance says
nothing (docs/validation.md); scripts/time_table.py --rule mala-band reads it over the whole block.

1. Probe: the rule's bracket (llc/tuning/calibrate.py) places ε₀; the grid ε₀·2^j, j = −3..3, runs
   one block of PROBE_STEPS steps in one batched run. The chosen ε is the largest cell with MALA
   acceptance ≥ MALA_BAND and no diverged chain; without one there is no estimate.
2. Run: the chosen ε and ε/2 (a fallback), each from w*, one block of the cap's steps in one
   batched run: λ̂(ε, T) over the windows [T/2, T] (scripts/time_table.py). Every run is the whole
   cap: a plateau after a short time can be one the chains leave later (the "false plateau" of the
   tables), and the settling tests cannot tell it from a settled chain.
3. Answer: the chosen cell when its acceptance over the whole run is still ≥ MALA_BAND (chains that
   spread into sharper regions accept less), else the fallback when its acceptance is, else none.
   Its λ̂ over the last window [T/2, T] is the answer when it agrees with its λ̂ over [T/4, T/2]
   (within FLAT_TOLERANCE or two standard errors), else none (still moving); its status is that of
   the last window's draws (time_table.window_status).

In the λ̂(ε, T) tables (scripts/time_table.py) a cell at acceptance ≥ 0.95 read within 6% of λ
wherever it had settled, and cells at 0.85-0.9 read 10-15% high; the chains need the time
T = ε × steps to settle, so the largest unbiased ε reaches it in the fewest steps.

    python scripts/mala_band.py 12,6,2,6 1 --out docs/validation/mala_band_development.jsonl
    python scripts/mala_band.py --from docs/validation/mala_band_development.jsonl

Rows already in --out are skipped, so a run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from time_table import MALA_BAND, cases_of, in_band, judge, last_window_answer, resumable, table_cells

from grokscope.llc.config import sgld_config
from grokscope.llc.tuning.calibrate import GRID_OFFSETS, _bracket
from grokscope.llc.validation.suite import Case

PROBE_STEPS = 10_000


def run_case(case: Case, cap: int) -> dict:
    """Probe and run (module docstring) on one network; every cell's numbers are kept."""
    start = time.perf_counter()
    model, data = case.build()
    weights = {n: p.detach() for n, p in model.named_parameters()}
    config = sgld_config(**case.settings | dict(n_steps=PROBE_STEPS, max_steps=PROBE_STEPS, mala=True))
    epsilon0 = _bracket(model, data, weights, config, "mse", 0, None, False)["epsilon"]
    probe = table_cells(case, model, data, weights, [epsilon0 * offset for offset in GRID_OFFSETS], PROBE_STEPS)
    passing = [float(e) for e, c in probe.items() if in_band(c)]
    run = table_cells(case, model, data, weights, [passing[-1] / 2, passing[-1]], cap) if passing else {}
    return dict(case=case.name, truth=case.truth, cap=cap, epsilon0=epsilon0, probe=probe, run=run,
                seconds=time.perf_counter() - start)


def answer(record: dict) -> dict:
    """The rule's answer (module docstring, step 3) from a stored record."""
    if not record["run"]:
        return dict(estimate=None, status="none", epsilon=None, why=f"no probe cell at MALA ≥ {MALA_BAND} without divergence")
    for epsilon, cell in sorted(((float(e), c) for e, c in record["run"].items()), reverse=True):
        if in_band(cell):
            return last_window_answer(epsilon, cell)
    return dict(estimate=None, status="none", epsilon=None,
                why="MALA fell below the band in both run cells: " + ", ".join(f"{c['mala'] or 0:.3f}" for c in record["run"].values()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("widths", nargs="?", help="the network's widths, e.g. 12,6,2,6")
    parser.add_argument("rank", nargs="?", type=int)
    parser.add_argument("--held-out", type=int, metavar="SEED", help="every network of this fixed family, then the criteria")
    parser.add_argument("--max-steps", type=int, default=160_000, help="the run's step cap")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--from", dest="source", type=Path, help="judge the records stored in this file, running nothing")
    args = parser.parse_args()
    if args.source:
        judge([json.loads(line) for line in args.source.read_text().splitlines()], answer)
        return
    records = resumable(cases_of(args, parser), args.out, "cap", args.max_steps, lambda case: run_case(case, args.max_steps))
    judge(records, answer)


if __name__ == "__main__":
    main()
