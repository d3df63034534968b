"""Are the transformers' estimates settled? At the final checkpoint of the `pizza` and `clock` presets
(seed 0): λ̂ with ε chosen by the rule (the defaults of `grokscope llc`), then at half that ε with
twice the steps and twice the cap. A settled estimate free of step-size bias moves less than 10%.
Resumable: trained runs are reused and finished rows are kept in --out (JSON lines); prints the
table of docs/validation.md.

    python scripts/transformer_settling.py --out docs/validation/transformers.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from grokscope import build_config, load_run, train
from grokscope.atomic import json_safe
from grokscope.llc.api import run_llc
from grokscope.llc.config import sgld_config


def _row(preset: str, label: str, result, seconds: float) -> dict:
    entry = result.entries[-1]
    return {"preset": preset, "setting": label, "epsilon": result.settings["epsilon"], "n_steps": result.settings["n_steps"],
            "llc_mean": entry.llc_mean, "llc_std": entry.llc_std, "mcse": entry.mcse, "status": entry.status,
            "steps_used": entry.steps_used, "mala_acceptance": entry.mala_acceptance, "flags": entry.flags,
            "seconds": seconds, "calibration": result.settings.get("calibration")}


def measure(preset: str, runs: Path) -> list[dict]:
    path = runs / f"settling-{preset}"
    run = load_run(path) if (path / "config.json").exists() and load_run(path).steps[-1:] == [build_config(preset).training.n_steps] \
        else train(build_config(preset), path, progress=False)
    start = time.perf_counter()
    auto = run_llc(run, sgld_config(), "last", progress=False, auto_at="last")
    rows = [_row(preset, "rule", auto, time.perf_counter() - start)]
    epsilon = auto.settings["epsilon"]
    if epsilon is not None:
        base = sgld_config()
        halved = sgld_config(epsilon=epsilon / 2, n_steps=2 * base.n_steps, max_steps=2 * base.step_cap)
        start = time.perf_counter()
        rows.append(_row(preset, "ε/2, 2× steps", run_llc(run, halved, "last", progress=False), time.perf_counter() - start))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="docs/validation/transformers.jsonl")
    parser.add_argument("--runs", default="runs", help="where the trained runs are kept")
    parser.add_argument("--presets", nargs="+", default=["clock", "pizza"])
    args = parser.parse_args()
    torch.set_num_threads(2)
    out = Path(args.out)
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()] if out.exists() else []
    for preset in args.presets:
        if any(r["preset"] == preset for r in rows):
            continue
        found = measure(preset, Path(args.runs))
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a") as stream:
            stream.writelines(json.dumps(json_safe(r)) + "\n" for r in found)
        rows += found
    print("| preset | setting | ε | λ̂ ± MCSE | status | steps | MALA | s | reasons |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        value = "none" if r["llc_mean"] is None else f"{r['llc_mean']:.4g} ± {r['mcse'] or 0:.2g}"
        epsilon = "none" if r["epsilon"] is None else f"{r['epsilon']:.3g}"
        print(f"| {r['preset']} | {r['setting']} | {epsilon} | {value} | {r['status']} | {r['steps_used']} | "
              f"{r['mala_acceptance'] if r['mala_acceptance'] is None else round(r['mala_acceptance'], 2)} | {r['seconds']:.0f} | "
              f"{'; '.join(r['flags']) or '—'} |")
    for preset in dict.fromkeys(r["preset"] for r in rows):
        pair = [r for r in rows if r["preset"] == preset and r["llc_mean"] is not None]
        if len(pair) == 2:
            change = pair[1]["llc_mean"] / pair[0]["llc_mean"] - 1
            print(f"{preset}: λ̂ moves {100 * change:+.1f}% at half the step size with twice the steps")


if __name__ == "__main__":
    main()
