"""LLC speed: grokscope's batched SGLD against devinterp 1.3.2, and against a FLOP floor.

Workload (issue: LLC estimator): every checkpoint of the `example` preset, SGLD γ=5, ε=1e-3,
3000 steps (750 burn-in), m=64, nβ = n/ln n, with 1 and with 4 chains per checkpoint. devinterp
runs the same checkpoints and settings sequentially, its normal use, in this same process.

FLOP floor = forward+backward FLOPs per chain-step × chain-steps / float32 matmul rate measured here.

    python benchmarks/llc_speed.py                      # the full workload (devinterp: ~35 min)
    python benchmarks/llc_speed.py --devinterp-checkpoints 4   # devinterp on 4 evenly spaced
                                                        # checkpoints, scaled to all (marked)
    python benchmarks/llc_speed.py --variants-only      # per-step cost of rmsprop_sgld, step metrics
                                                        # and MALA relative to plain sgld
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from pathlib import Path

import torch

from grokscope import build_config, train
from grokscope.llc import estimate_llc

SETTINGS = dict(gamma=5.0, epsilon=1e-3, n_steps=3000, burn_in=750, batch_size=64)


def matmul_rate(size: int = 2048, repeats: int = 10) -> float:
    """float32 FLOP/s of a large square matmul on this machine."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def mlp_flops_per_chain_step(p: int, d: int, h: int, m: int) -> float:
    """Forward matmul FLOPs of the untied MLP on a minibatch of m pairs (first layer on both
    operands, unembedding), times 3 for forward + backward (grads of inputs and weights)."""
    forward = 2 * m * (2 * d * h + h * p)
    return 3 * forward


def run_grokscope(run, chains: int, **extra: object) -> float:
    data = run.dataset()
    params = [run.state_dict(s) for s in run.steps]
    start = time.perf_counter()
    estimate_llc(run.new_model(), (data.train_x, data.train_y), params, checkpoint_ids=run.steps, chains=chains, **{**SETTINGS, **extra})
    return time.perf_counter() - start


# (label, extra settings): the kernels and observers whose per-step cost is printed relative to plain sgld
VARIANTS = [
    ("sgld", dict(mala=False)),
    ("rmsprop_sgld", dict(sampler="rmsprop_sgld", epsilon=1e-4, mala=False)),
    ("sgld + step metrics", dict(step_metrics=True, mala=False)),
    ("sgld + MALA on every 20th move (the default)", {}),
    ("sgld + MALA on every move", dict(mala_every=1)),
]


def variant_costs(run, chains: int = 4, steps: int = 1000) -> None:
    """Per chain-step cost of each kernel/observer variant on the workload's checkpoints."""
    k = len(run.steps)
    print(f"\n| variant ({k} checkpoints × {chains} chains × {steps} steps) | time | µs per chain-step | relative to sgld |")
    print("| --- | --- | --- | --- |")
    base = None
    for label, extra in VARIANTS:
        seconds = run_grokscope(run, chains, n_steps=steps, burn_in=steps // 4, **extra)
        base = base or seconds
        print(f"| {label} | {seconds:.1f} s | {1e6 * seconds / (k * chains * steps):.0f} | {seconds / base:.2f}× |", flush=True)


def run_devinterp(run, steps: list[int], chains: int) -> float:
    from devinterp.optim.sgld import SGLD
    from devinterp.slt.sampler import estimate_learning_coeff_with_summary
    from torch.utils.data import DataLoader, TensorDataset

    data = run.dataset()
    n = data.n_train
    loader = DataLoader(TensorDataset(data.train_x, data.train_y), batch_size=SETTINGS["batch_size"], shuffle=True)

    def evaluate(net, batch):
        x, y = batch
        return torch.nn.functional.cross_entropy(net(x), y)

    start = time.perf_counter()
    for step in steps:
        model = run.model(step)
        with torch.no_grad():
            init_loss = torch.nn.functional.cross_entropy(model(data.train_x), data.train_y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            estimate_learning_coeff_with_summary(
                model, loader, evaluate=evaluate, sampling_method=SGLD,
                optimizer_kwargs=dict(lr=SETTINGS["epsilon"], localization=SETTINGS["gamma"], nbeta=n / math.log(n)),
                num_chains=chains, num_draws=SETTINGS["n_steps"] - SETTINGS["burn_in"],
                num_burnin_steps=SETTINGS["burn_in"], init_loss=init_loss, seed=0, verbose=False,
            )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/bench-example", help="where the example preset is trained (reused)")
    parser.add_argument("--devinterp-checkpoints", default="all", help="'all', or N evenly spaced checkpoints, scaled up")
    parser.add_argument("--variants-only", action="store_true", help="only the per-step cost of each kernel and observer")
    args = parser.parse_args()
    torch.set_num_threads(2)

    run_dir = Path(args.run)
    run = train(build_config("example"), run_dir, progress=False)
    cfg = run.config
    k = len(run.steps)
    rate = matmul_rate()
    per_chain_step = mlp_flops_per_chain_step(cfg.task.p, cfg.model.embed_dim, cfg.model.hidden_size, SETTINGS["batch_size"])
    print(f"checkpoints: {k}; float32 matmul rate: {rate / 1e9:.1f} GFLOP/s; {per_chain_step / 1e6:.3f} MFLOP per chain-step")

    if args.devinterp_checkpoints == "all":
        dv_steps = run.steps
    else:
        count = int(args.devinterp_checkpoints)
        dv_steps = [run.steps[round(i * (k - 1) / max(count - 1, 1))] for i in range(count)]
    scale = k / len(dv_steps)

    run_grokscope(run, 1, n_steps=100, burn_in=25)  # warm-up (first-call overheads)
    if args.variants_only:
        variant_costs(run)
        return
    rows = []
    for chains in (1, 4):
        ours = run_grokscope(run, chains)
        theirs = run_devinterp(run, dv_steps, chains) * scale
        floor = per_chain_step * k * chains * SETTINGS["n_steps"] / rate
        rows.append((chains, ours, theirs, floor))
        print(f"{chains} chain(s): grokscope {ours:.1f} s, devinterp {theirs:.1f} s", flush=True)

    marker = "" if scale == 1 else f" (devinterp measured on {len(dv_steps)} of {k} checkpoints, scaled ×{scale:.2f})"
    print(f"\n| chains/checkpoint | grokscope | devinterp 1.3.2 | speed-up | FLOP floor | grokscope / floor |{marker}")
    print("| --- | --- | --- | --- | --- | --- |")
    for chains, ours, theirs, floor in rows:
        print(f"| {chains} | {ours:.1f} s | {theirs:.0f} s | {theirs / ours:.1f}× | {floor:.2f} s | {ours / floor:.1f}× |")
    variant_costs(run)


if __name__ == "__main__":
    main()
