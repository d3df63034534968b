"""The Bayesian influence against leave-one-out retraining on tiny modular-addition networks
(docs/posterior.md). For each training seed: train the tiny MLP, sample the local posterior at its
final checkpoint with per-pair losses, compute each training pair's BIF on the mean held-out loss,
retrain from the checkpoint without each pair (posterior/retraining.py), and report Spearman's ρ
between the two rankings. Settings are fixed here, before the first run; rows append to --out
(resumable: seeds already there are skipped).

    python scripts/bif_retraining.py --seeds 0 1 2 3 4 5 6 7 --out docs/posterior/bif_retraining.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from scipy.stats import spearmanr

from grokscope import build_config, train
from grokscope.posterior import posterior_statistics
from grokscope.posterior.retraining import leave_one_out_effects

NETWORK = {"p": 7, "train_frac": 0.6, "embed_dim": 4, "hidden_size": 8, "n_steps": 300, "n_checkpoints": 2, "batch_size": 16,
           "eval_every": 5}  # tests/tiny.py at p = 7: 29 training pairs, 20 held out
SAMPLER = dict(epsilon=1e-3, n_steps=2000, chains=8, batch_size=16)
GAMMAS = (5.0, 50.0)  # the default localisation, and a tighter one where the Gaussian picture should hold better


def one_seed(seed: int, gamma: float) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        run = train(build_config("example", overrides={**NETWORK, "seed": seed}), Path(folder) / "run", progress=False)
        data = run.dataset()
        x, y = data.all_pairs()
        trained = torch.arange(len(y)) < data.n_train
        anchor = run.state_dict(run.steps[-1])
        began = time.perf_counter()
        result = posterior_statistics(run.new_model(), (data.train_x, data.train_y), (x, y), anchor, trained=trained,
                                      components={}, draws_per_block=SAMPLER["n_steps"], gamma=gamma, **SAMPLER)
        sampled = time.perf_counter() - began
        bif = result.influence(0, ~trained)
        effects = leave_one_out_effects(run.new_model(), anchor, (data.train_x, data.train_y), (data.test_x, data.test_y),
                                        result.nbeta, gamma)
        rho, p_value = spearmanr(bif.numpy(), effects.numpy())
        scale = float((bif * effects).sum() / (bif * bif).sum())  # least-squares slope of effect on BIF (1: same scale)
        c = result.checkpoints[0]
        return {"seed": seed, "gamma": gamma, "pairs": int(data.n_train), "spearman": float(rho), "p_value": float(p_value),
                "slope_effect_on_bif": scale, "status": c.status, "flags": c.flags, "llc": c.llc, "draws": c.draws,
                "final_train_loss": run.metrics[-1]["train_loss"], "seconds_sampling": round(sampled, 1),
                "settings": {"network": NETWORK, "sampler": SAMPLER}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(8)))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    done = set()
    if args.out.exists():
        done = {(row["seed"], row["gamma"]) for row in map(json.loads, args.out.read_text().splitlines())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for gamma in GAMMAS:
        for seed in args.seeds:
            if (seed, gamma) in done:
                continue
            row = one_seed(seed, gamma)
            with args.out.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            print(f"seed {seed} γ {gamma:g}: ρ = {row['spearman']:+.3f} (p = {row['p_value']:.3g}, {row['pairs']} pairs), "
                  f"slope {row['slope_effect_on_bif']:.2f}, {row['status']}", file=sys.stderr)


if __name__ == "__main__":
    main()
