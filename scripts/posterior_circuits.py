"""Does the loss kernel tell a Pizza from a Clock? The per-pair posterior statistics at the final
checkpoint of the `pizza` and `clock` presets (seed 0), whole model only, at the setting that
settles the `pizza` preset's λ̂ (docs/validation.md, "The transformers": ε = 1e-6, 4 chains, first
block 3000 steps, cap 192,000 unless --max-steps). Each row carries the status of its chains; the kernel shares of
(a + b) and (a − b) come with the chance level of the same number of random classes.
Resumable: trained runs are reused and finished (preset, cap) rows are kept in --out (JSON lines).

    python scripts/posterior_circuits.py --out docs/posterior/circuits.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from grokscope import build_config, load_run, train
from grokscope.atomic import json_safe
from grokscope.llc.config import sgld_config
from grokscope.posterior.run import run_posterior, save_posterior

SETTING = dict(epsilon=1e-6, n_steps=3000, max_steps=192_000, chains=4)


def measure(preset: str, runs: Path, max_steps: int) -> dict:
    path = runs / f"circuit-{preset}"
    final = build_config(preset).training.n_steps
    run = load_run(path) if (path / "config.json").exists() and load_run(path).steps[-1:] == [final] \
        else train(build_config(preset), path, progress=False)
    start = time.perf_counter()
    setting = SETTING | {"max_steps": max_steps}
    result = run_posterior(run, sgld_config(**setting), "-1", epsilon_auto=False, progress=False, components={})
    stored, _ = save_posterior(run, result)
    row = stored["checkpoints"][-1]
    return {"preset": preset, "setting": setting, "seconds": time.perf_counter() - start,
            **{k: row.get(k) for k in ("step", "status", "flags", "llc", "draws", "loss_gain_trained", "loss_gain_held_out",
                                       "kernel_share_sum", "kernel_share_difference", "kernel_share_chance")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="docs/posterior/circuits.jsonl")
    parser.add_argument("--runs", default="runs", help="where the trained presets are kept")
    parser.add_argument("--presets", nargs="+", default=["pizza", "clock"])
    parser.add_argument("--max-steps", dest="max_steps", type=int, default=SETTING["max_steps"], help="the cap on each chain's steps")
    args = parser.parse_args()
    torch.set_num_threads(2)
    out = Path(args.out)
    rows = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    for preset in args.presets:
        if any(row["preset"] == preset and row["setting"]["max_steps"] == args.max_steps for row in rows):
            continue
        row = measure(preset, Path(args.runs), args.max_steps)
        rows.append(row)
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a") as stream:
            stream.write(json.dumps(json_safe(row)) + "\n")
    print("| preset | status | λ̂ | draws | loss gain: trained | held-out | kernel share: (a + b) | (a − b) | chance |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['preset']} | {row['status']} | {row['llc']:.1f} | {row['draws']} | {row['loss_gain_trained']:.4f} | "
              f"{row['loss_gain_held_out']:.4f} | {row['kernel_share_sum']:.3f} | {row['kernel_share_difference']:.4f} | "
              f"{row['kernel_share_chance']:.4f} |")


if __name__ == "__main__":
    main()
