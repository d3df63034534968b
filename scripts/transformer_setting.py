"""Which sampler setting gives settled LLC estimates on the transformers? A grid over step size ε
and localisation γ on three trained networks fixed in advance (the `pizza` preset at seeds 0 and 1,
the `clock` preset at seed 0, final checkpoints), 8 chains a cell, with `sgld` and `rmsprop_sgld`.

Grid `first`: ε ∈ {1e-6, 2e-6, 4e-6} × γ ∈ {5, 100, 1000}, a fixed 50,000 steps a chain; grid
`long`: ε ∈ {1e-6, 2e-6} at γ = 5, 200,000 steps; grid `middle`: ε ∈ {5e-7, 1e-6, 2e-6} × γ ∈ {20, 50},
100,000 steps. Every cell runs its fixed number of steps; the
tool's λ̂, MCSE, status and reasons at the end are kept, and λ̂ over the first quarter, half and all
of the steps (the first quarter of each discarded as burn-in), so that "ε halved, steps doubled"
can be read off the grid. The cells of one network and sampler are one batched run (per-set
settings, common random numbers across cells). Resumable: trained runs are reused and each finished
(network, sampler) part is a row group in --out (JSON lines).
The criteria a setting must meet are written in docs/validation.md before the first run.

    python scripts/transformer_setting.py --out docs/validation/transformer_setting.jsonl
    python scripts/transformer_setting.py --out docs/validation/transformer_setting.jsonl --table
    python scripts/transformer_setting.py --grid long ...     # the longer chains at γ = 5
    python scripts/transformer_setting.py --grid middle ...   # γ = 20 and 50
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from grokscope import build_config, load_run, train
from grokscope.atomic import json_safe
from grokscope.llc import estimate_llc

NETWORKS = (("pizza", 0), ("pizza", 1), ("clock", 0))
SAMPLERS = ("sgld", "rmsprop_sgld")
CHAINS = 8
# grid name -> (step sizes, localisations, steps a chain); "long" follows "first" at γ = 5, "middle"
# tries the γ between (each fixed in docs/validation.md before it ran)
GRIDS = {"first": ((1e-6, 2e-6, 4e-6), (5.0, 100.0, 1000.0), 50_000), "long": ((1e-6, 2e-6), (5.0,), 200_000),
         "middle": ((5e-7, 1e-6, 2e-6), (20.0, 50.0), 100_000)}


def prefixes(steps: int) -> tuple[int, int, int]:
    return steps // 4, steps // 2, steps


def trained(preset: str, seed: int, runs: Path):
    path = runs / f"setting-{preset}-{seed}"
    cfg = build_config(preset, overrides={"seed": seed})
    if (path / "config.json").exists() and load_run(path).steps[-1:] == [cfg.training.n_steps]:
        return load_run(path)
    return train(cfg, path, progress=False)


def prefix_llcs(draws: torch.Tensor, init_loss: float, nbeta: float, steps_used: int, steps: int) -> dict[str, float | None]:
    """λ̂ over the first N steps (burn-in N/4) for each N the chains reached; draws [steps, chains]."""
    out = {}
    for n in prefixes(steps):
        if n <= steps_used:
            out[str(n)] = nbeta * (draws[n // 4 : n].double().mean().item() - init_loss)
    return out


def measure(grid: str, preset: str, seed: int, sampler: str, runs: Path, device: str = "cpu") -> list[dict]:
    run = trained(preset, seed, runs)
    step = run.steps[-1]
    data = run.dataset()
    epsilons, gammas, steps = GRIDS[grid]
    cells = [(eps, gamma) for eps in epsilons for gamma in gammas]
    start = time.perf_counter()
    result = estimate_llc(run.new_model(), (data.train_x, data.train_y), [run.state_dict(step)] * len(cells),
                          checkpoint_ids=[step] * len(cells), per_set=[{"epsilon": e, "gamma": g} for e, g in cells],
                          sampler=sampler, chains=CHAINS, n_steps=steps, max_steps=steps, device=device)
    seconds = time.perf_counter() - start
    n = data.n_train
    nbeta = n / math.log(n)
    rows = []
    for k, ((eps, gamma), entry) in enumerate(zip(cells, result.entries)):
        draws = result.loss_draws[:, k * CHAINS : (k + 1) * CHAINS]
        rows.append(json_safe({
            "grid": grid, "preset": preset, "seed": seed, "step": step, "sampler": sampler, "epsilon": eps, "gamma": gamma,
            "llc_mean": entry.llc_mean, "mcse": entry.mcse, "status": entry.status, "flags": entry.flags,
            "steps_used": entry.steps_used, "mala_acceptance": entry.mala_acceptance, "r_hat": entry.r_hat,
            "gamma_elasticity": entry.gamma_elasticity, "init_loss": entry.init_loss,
            "prefix_llc": prefix_llcs(draws, entry.init_loss, nbeta, entry.steps_used, steps) if entry.steps_used else {},
            "seconds_of_part": seconds, "device": device,
        }))
    return rows


def table(rows: list[dict], grid: str) -> None:
    quarter, half, steps = prefixes(GRIDS[grid][2])
    print(f"| network | sampler | ε | γ | λ̂ ± MCSE | status | steps | MALA | λ̂ at {quarter:,} / {half:,} / {steps:,} | first reason |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        prefix = " / ".join(f"{r['prefix_llc'][str(n)]:.1f}" if str(n) in r["prefix_llc"] else "—" for n in (quarter, half, steps))
        llc = f"{r['llc_mean']:.1f} ± {r['mcse']:.1f}" if r["llc_mean"] is not None and r["mcse"] is not None else "—"
        mala = f"{r['mala_acceptance']:.2f}" if r["mala_acceptance"] is not None else "—"
        print(f"| {r['preset']} {r['seed']} | {r['sampler']} | {r['epsilon']:g} | {r['gamma']:g} | {llc} | {r['status']} | "
              f"{r['steps_used']} | {mala} | {prefix} | {(r['flags'] or ['—'])[0]} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="docs/validation/transformer_setting.jsonl")
    parser.add_argument("--runs", default="runs", help="where the trained runs are kept")
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS))
    parser.add_argument("--grid", choices=sorted(GRIDS), default="first")
    parser.add_argument("--device", default="cpu", help="where the chains run (cpu, or cuda: the same numbers to float rounding)")
    parser.add_argument("--table", action="store_true", help="only print the table of the rows so far")
    args = parser.parse_args()
    torch.set_num_threads(2)
    out = Path(args.out)
    stored = [json.loads(line) for line in out.read_text().splitlines() if line.strip()] if out.exists() else []
    rows = [r for r in stored if r.get("grid", "first") == args.grid]
    if not args.table:
        for sampler in args.samplers:
            for preset, seed in NETWORKS:
                if any(r["preset"] == preset and r["seed"] == seed and r["sampler"] == sampler for r in rows):
                    continue
                part = measure(args.grid, preset, seed, sampler, Path(args.runs), args.device)
                rows += part
                with out.open("a") as f:  # a whole part per write: a killed run loses at most the part it was in
                    f.write("".join(json.dumps(r) + "\n" for r in part))
                print(f"{preset} {seed} {sampler}: {part[0]['seconds_of_part']:.0f} s", flush=True)
    table(rows, args.grid)


if __name__ == "__main__":
    main()
