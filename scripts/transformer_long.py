"""Long chains on the transformers, for a GPU: do the `pizza` and `clock` networks' λ̂ settle with
chains of 10⁵–10⁶ steps? One process per preset (the networks of scripts/transformer_setting.py,
final checkpoints, trained into runs/setting-PRESET-SEED), its seeds and all their cells in one
batched run (per-set ε, γ and training data, 8 chains a cell, `sgld`).

The chains run a fixed number of steps N, the largest of LADDER that the rate measured at the start
says will finish before --until (after a run that pays the device's start-up, two short runs, so
that fixed costs cancel). While they run, a user observer appends every chain's mean minibatch loss
over each window of --window steps to PRESET-SEED.windows.jsonl, so a run cut short still leaves λ̂
over every whole window reached; at the end the tool's own status of each cell goes to
PRESET-SEED.final.json. --table prints λ̂ over the first N/8, N/4, N/2 and N steps (burn-in a
quarter of the windows of each) and the settling checks on the window means. The criteria are
written in docs/validation.md before the first run. scripts/transformer_long_gpu.sh is one GPU call:

    NETWORKS="pizza:0,1 clock:0" BUDGET=470 OUT=runs/long scripts/transformer_long_gpu.sh
    python scripts/transformer_long.py --table --out docs/validation/transformer_long
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch

from grokscope import load_run
from grokscope.atomic import json_safe
from grokscope.llc import estimate_llc
from grokscope.llc.diagnostics.convergence import rhat
from transformer_setting import trained  # the same runs, trained the same way

CELLS = [(eps, gamma) for gamma in (5.0, 20.0, 50.0) for eps in (5e-7, 1e-6, 2e-6) if not (gamma == 5.0 and eps == 5e-7)]
CHAINS = 8
LADDER = (200_000, 400_000, 800_000, 1_600_000, 3_200_000)
SUMMARY_ALLOWANCE_S = 45.0  # the tool's own diagnostics on the whole traces, after the last step


class WindowMeans:
    """A user observer: each chain's mean minibatch loss over windows of ``window`` steps, appended
    to the sinks (one JSON line a window each; a sink is a file and the chains it keeps) as soon as
    the window closes."""

    name = "window_means"

    def __init__(self, window: int, sinks: list[tuple[Path, slice]]):
        self.window, self.sinks = window, sinks

    def make(self, start: int, stop: int, n_chains: int, device: torch.device):
        return _Windows(self.window, self.sinks, n_chains, device)

    def summarise(self, series: torch.Tensor) -> int:
        return int(series.shape[0])


class _Windows:
    uses_noise = False

    def __init__(self, window: int, sinks: list[tuple[Path, slice]], n_chains: int, device: torch.device):
        self.window, self.sinks = window, sinks
        self.sum = torch.zeros(n_chains, dtype=torch.float64, device=device)
        self.means: list[torch.Tensor] = []

    def observe(self, step, state, loss, loss_grad, noise, batch) -> None:
        self.sum += loss
        if (step + 1) % self.window == 0:
            means = (self.sum / self.window).cpu()
            self.means.append(means)
            for path, chains in self.sinks:
                with path.open("a") as f:
                    f.write(json.dumps({"step": step + 1, "means": means[chains].tolist()}) + "\n")
            self.sum.zero_()

    def result(self) -> dict[str, torch.Tensor]:
        return {"window_means": torch.stack(self.means) if self.means else torch.zeros(0, self.sum.shape[0])}


def sample(runs: list, steps: int, device: str, observers=()):
    """Every cell of every network (runs of one preset, its seeds) in one batched run, each set with
    its own network's training data."""
    sets = [(run, cell) for run in runs for cell in CELLS]
    return estimate_llc(runs[0].new_model(), [(run.dataset().train_x, run.dataset().train_y) for run, _ in sets],
                        [run.state_dict(run.steps[-1]) for run, _ in sets], checkpoint_ids=[run.steps[-1] for run, _ in sets],
                        per_set=[{"epsilon": e, "gamma": g} for _, (e, g) in sets], sampler="sgld", chains=CHAINS,
                        n_steps=steps, max_steps=steps, device=device, observers=observers)


def timed(runs: list, steps: int, device: str):
    began = time.perf_counter()
    result = sample(runs, steps, device)
    return result, time.perf_counter() - began


def choose_steps(seconds_per_step: float, seconds_left: float, ladder: tuple[int, ...], window: int) -> int:
    """The largest rung that fits (with a fifth to spare); else the most whole windows that fit."""
    fits = [n for n in ladder if 1.2 * n * seconds_per_step <= seconds_left]
    if fits:
        return max(fits)
    return max(window, int(seconds_left / (1.2 * seconds_per_step)) // window * window)


def network_runs(networks: str, runs_dir: Path, training: bool = False) -> tuple[list[str], list]:
    """The names (PRESET:SEED) and runs of ``networks``; trained first where ``training`` and missing."""
    preset, seeds = networks.split(":")
    names = [f"{preset}:{seed}" for seed in seeds.split(",")]
    runs = [trained(preset, int(seed), runs_dir) if training else load_run(runs_dir / f"setting-{preset}-{seed}")
            for seed in seeds.split(",")]
    return names, runs


def measure(networks: str, runs_dir: Path, out: Path, device: str, until: float, ladder: tuple[int, ...], window: int,
            timing: tuple[int, int]) -> None:
    """``networks``: PRESET:SEED or PRESET:SEED,SEED,... (the seeds of one preset sample together)."""
    names, runs = network_runs(networks, runs_dir)
    short, longer = timing
    try:  # the first run also pays the device's start-up (CUDA context, kernels loaded): not timed
        first = sample(runs, short, device)
    except RuntimeError as error:  # a step the CUDA graphs cannot capture: the plain loop, said so in the header
        print(f"{networks}: CUDA graphs failed ({str(error).splitlines()[0]}); without them", flush=True)
        os.environ["GROKSCOPE_CUDA_GRAPHS"] = "0"
        first = sample(runs, short, device)
    _, t_short = timed(runs, short, device)
    _, t_longer = timed(runs, longer, device)
    per_step = (t_longer - t_short) / (longer - short)
    if per_step <= 0:  # noise larger than the difference: the longer run's whole time, an upper bound
        per_step = t_longer / longer
    steps = choose_steps(per_step, until - time.time() - SUMMARY_ALLOWANCE_S, ladder, window)
    n = runs[0].dataset().n_train
    per_network = len(CELLS) * CHAINS
    headers, sinks = [], []
    for i, (name, run) in enumerate(zip(names, runs)):
        headers.append({
            "network": name, "step": run.steps[-1], "cells": CELLS, "chains": CHAINS, "sampler": "sgld",
            "nbeta": n / math.log(n), "init_loss": [e.init_loss for e in first.entries[i * len(CELLS) : (i + 1) * len(CELLS)]],
            "window": window, "steps": steps, "seconds_per_step": per_step, "device": device, "batched_with": names,
            "cuda_graphs": os.environ.get("GROKSCOPE_CUDA_GRAPHS", "1") != "0",
            "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else None})
        sinks.append((out / f"{name.replace(':', '-')}.windows.jsonl", slice(i * per_network, (i + 1) * per_network)))
        sinks[-1][0].write_text(json.dumps(headers[-1]) + "\n")
    print(f"{networks}: {per_step * 1e3:.3f} ms a step, running {steps:,} steps", flush=True)
    began = time.perf_counter()
    result = sample(runs, steps, device, observers=[WindowMeans(window, sinks)])
    seconds = time.perf_counter() - began
    for i, (header, (path, _)) in enumerate(zip(headers, sinks)):
        rows = [json_safe({"epsilon": e, "gamma": g, "llc_mean": entry.llc_mean, "mcse": entry.mcse, "status": entry.status,
                           "flags": entry.flags, "steps_used": entry.steps_used, "burn_in": entry.burn_in,
                           "mala_acceptance": entry.mala_acceptance, "r_hat": entry.r_hat,
                           "gamma_elasticity": entry.gamma_elasticity})
                for (e, g), entry in zip(CELLS, result.entries[i * len(CELLS) : (i + 1) * len(CELLS)])]
        final = path.with_name(path.name.replace(".windows.jsonl", ".final.json"))
        final.write_text(json.dumps({**header, "seconds": seconds, "cells": rows}, indent=1))
    print(f"{networks}: done in {seconds:.0f} s", flush=True)


def windows(path: Path) -> tuple[dict, torch.Tensor]:
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    header, rows = lines[0], lines[1:]
    means = torch.tensor([r["means"] for r in rows], dtype=torch.float64) if rows else torch.zeros(0, 0)
    return header, means


def chain_llcs(header: dict, means: torch.Tensor, cell: int, steps: int, first: int = 0) -> torch.Tensor | None:
    """Each chain's λ̂ over windows [first, steps) of one cell; None past the windows reached."""
    w = header["window"]
    if steps < w or steps > means.shape[0] * w:
        return None
    kept = means[first // w : steps // w, cell * header["chains"] : (cell + 1) * header["chains"]]
    return header["nbeta"] * (kept.mean(0) - header["init_loss"][cell])


def prefix_llc(header: dict, means: torch.Tensor, cell: int, steps: int) -> float | None:
    """λ̂ of one cell over its first ``steps`` steps (whole windows), the first quarter of the windows
    (rounded down) discarded, from the window means."""
    per_chain = chain_llcs(header, means, cell, steps, steps // header["window"] // 4 * header["window"])
    return None if per_chain is None else per_chain.mean().item()


def window_checks(header: dict, means: torch.Tensor, cell: int, steps: int) -> tuple[float, float, float]:
    """The tool's settling checks (docs/validation.md, "Settled, or it says so") on the window means
    of the first ``steps`` steps, burn-in a quarter: R-hat of the window means, and the paired
    per-chain change of λ̂ between the halves of the kept windows and between N/2 and N steps, each
    in standard errors of the paired difference and as a fraction of λ̂."""
    w, chains = header["window"], header["chains"]
    burn = steps // w // 4 * w
    kept = means[burn // w : steps // w, cell * chains : (cell + 1) * chains]
    middle = (burn + steps) // 2 // w * w
    halves = chain_llcs(header, means, cell, steps, middle) - chain_llcs(header, means, cell, middle, burn)
    half_steps = steps // 2
    doubling = (chain_llcs(header, means, cell, steps, burn)
                - chain_llcs(header, means, cell, half_steps, half_steps // w // 4 * w))
    llc = prefix_llc(header, means, cell, steps)

    def change(d: torch.Tensor) -> float:  # > 1: beyond both two standard errors and 5% of λ̂, a move
        return min(abs(d.mean().item()) / (2 * d.std().item() / math.sqrt(len(d))), abs(d.mean().item()) / (0.05 * abs(llc)))

    return rhat(kept.T.numpy()), change(halves), change(doubling)


def cut(header: dict, means: torch.Tensor, ladder: tuple[int, ...] = LADDER) -> int:
    """The steps to read: all that were planned, or the largest rung reached by a run cut short."""
    reached = means.shape[0] * header["window"]
    return header["steps"] if reached >= header["steps"] else max([n for n in ladder if n <= reached], default=reached)


def table(out: Path) -> None:
    for path in sorted(out.glob("*.windows.jsonl")):
        header, means = windows(path)
        final = path.with_name(path.name.replace(".windows.jsonl", ".final.json"))
        cells = json.loads(final.read_text())["cells"] if final.exists() else None
        reached, steps = means.shape[0] * header["window"], cut(header, means)
        marks = [steps // 8, steps // 4, steps // 2, steps]
        print(f"\n{header['network']} (step {header['step']}), {header['steps']:,} steps planned, {reached:,} reached, "
              f"read over {steps:,}; {header['seconds_per_step'] * 1e3:.3f} ms a step on {header.get('gpu') or header['device']}")
        print("| ε | γ | λ̂ over " + " / ".join(f"{m:,}" for m in marks) + " steps | R-hat of the window means | "
              "halves, doubling (> 1: a move) | the tool's status at the end |")
        print("| --- | --- | --- | --- | --- | --- |")
        for k, (eps, gamma) in enumerate(header["cells"]):
            llcs = [prefix_llc(header, means, k, m) for m in marks]
            text = " / ".join("—" if v is None else f"{v:.1f}" for v in llcs)
            r_hat, halves, doubling = window_checks(header, means, k, steps)
            status = (f"{cells[k]['status']}: {(cells[k]['flags'] or ['—'])[0]}" if cells else "not finished")
            print(f"| {eps:g} | {gamma:g} | {text} | {r_hat:.3f} | {halves:.2f}, {doubling:.2f} | {status} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", help="preset:seed, or preset:seed,seed,... sampled together (pizza:0,1)")
    parser.add_argument("--runs", default="runs", help="where the trained runs are (runs/setting-PRESET-SEED)")
    parser.add_argument("--out", default="runs/long")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--until", type=float, help="a Unix time the chains must have finished by")
    parser.add_argument("--ladder", type=int, nargs="+", default=list(LADDER))
    parser.add_argument("--window", type=int, default=3125, help="steps a window (3125: N/8 is 8 windows for every rung)")
    parser.add_argument("--timing", type=int, nargs=2, default=(1000, 3000), help="the two short runs' steps")
    parser.add_argument("--table", action="store_true", help="only print λ̂ over the windows reached so far")
    parser.add_argument("--train", action="store_true", help="only train the runs of --network that are missing")
    args = parser.parse_args()
    out = Path(args.out)
    if args.table:
        table(out)
        return
    if args.train and args.network:
        network_runs(args.network, Path(args.runs), training=True)
        return
    if not args.network or args.until is None:
        parser.error("--network and --until are needed to sample")
    out.mkdir(parents=True, exist_ok=True)
    if args.device == "cpu":
        torch.set_num_threads(1)  # one group of chains, so one observer sees every chain (llc/sampling/thread_groups.py)
    measure(args.network, Path(args.runs), out, args.device, args.until, tuple(args.ladder), args.window, tuple(args.timing))


if __name__ == "__main__":
    main()
