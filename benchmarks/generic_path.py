"""The LLC estimator on models it has no hand-written step for, side by side with devinterp 1.3.2 and
the machine's floors measured in the same run.

Models: the validation's deep linear network [10, 10, 10, 10] (rank 5; n = 1e5, m = 500, γ = 1,
MSE), which is a plain nn.Sequential stack (hand-batched passes, models/sequential.py), and the
same network behind a forward of its own, which takes the generic path (torch.func.vmap over
functional_call, autograd). Each at 8 and 32 chains, a fixed budget of 2000 steps.

  matmul floor = the forward+backward matmul FLOPs of a chain-step (torch's FlopCounterMode) ÷ the
                 2048² float32 matmul rate; noise floor = the parameters ÷ the fastest normal rate.

    python benchmarks/generic_path.py [--devinterp-steps 300]
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import torch
from llc_speed import floor_rates
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from grokscope.llc import estimate_llc
from grokscope.llc.sampling.objective import BatchedObjective
from grokscope.llc.validation.suite import dln_case

CASE = dln_case([10, 10, 10, 10], 5)
SETTINGS = dict(CASE.settings, epsilon=1e-6, n_steps=2000, max_steps=2000, mala=False)


class Hidden(nn.Module):
    """The same network behind a forward of its own: the generic path."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)


def microseconds_per_chain_step(model: nn.Module, data, chains: int) -> float:
    start = time.perf_counter()
    estimate_llc(model, data, loss="mse", **dict(SETTINGS, chains=chains))
    return 1e6 * (time.perf_counter() - start) / (chains * SETTINGS["n_steps"])


def devinterp_microseconds(model: nn.Module, data, chains: int, steps: int) -> float:
    from devinterp.optim.sgld import SGLD
    from devinterp.slt.sampler import estimate_learning_coeff_with_summary
    from torch.utils.data import DataLoader, TensorDataset

    x, y = data
    n = len(x)
    loader = DataLoader(TensorDataset(x, y), batch_size=SETTINGS["batch_size"], shuffle=True)

    def evaluate(net, batch):
        return nn.functional.mse_loss(net(batch[0]), batch[1])

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimate_learning_coeff_with_summary(
            model, loader, evaluate=evaluate, sampling_method=SGLD,
            optimizer_kwargs=dict(lr=SETTINGS["epsilon"], localization=SETTINGS["gamma"], nbeta=n / math.log(n)),
            num_chains=chains, num_draws=steps - steps // 4, num_burnin_steps=steps // 4, seed=0, verbose=False,
        )
    return 1e6 * (time.perf_counter() - start) / (chains * steps)


def floor_microseconds(model: nn.Module, data) -> float:
    objective = BatchedObjective(model, "mse")
    params = {n: p.detach().unsqueeze(0) for n, p in model.named_parameters()}
    x, y = (t[: SETTINGS["batch_size"]].unsqueeze(0) for t in data)
    with FlopCounterMode(display=False) as counter:
        objective.losses_and_grads(params, {}, x, y)
    matmul, _, normals = floor_rates(torch.device("cpu"))
    n_params = sum(p.numel() for p in model.parameters())
    return 1e6 * (counter.get_total_flops() / matmul + n_params / normals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devinterp-steps", type=int, default=300, help="devinterp's steps a chain (0: skip it)")
    args = parser.parse_args()
    model, data = CASE.build()
    floor = floor_microseconds(model, data)
    print(f"{CASE.name}, m = {SETTINGS['batch_size']}, {SETTINGS['n_steps']} steps; floor {floor:.2f} µs per chain-step")
    print("| chains | path | µs per chain-step | ÷ floor | devinterp 1.3.2 | speed-up |")
    print("| --- | --- | --- | --- | --- | --- |")
    for chains in (8, 32):
        theirs = devinterp_microseconds(model, data, chains, args.devinterp_steps) if args.devinterp_steps else None
        for name, net in (("nn.Sequential stack", model), ("generic (vmap)", Hidden(model))):
            ours = microseconds_per_chain_step(net, data, chains)
            versus = "—" if theirs is None else f"{theirs:.1f} | {theirs / ours:.1f}×"
            print(f"| {chains} | {name} | {ours:.1f} | {ours / floor:.1f}× | {versus} |")


if __name__ == "__main__":
    main()
