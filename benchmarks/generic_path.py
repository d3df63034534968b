"""The LLC estimator on models it has no hand-written step for, side by side with devinterp 1.3.2 and
the machine's floors measured in the same run.

Models: the validation's deep linear network [10, 10, 10, 10] (rank 5; n = 1e5, m = 500, γ = 1,
MSE), which is a plain nn.Sequential stack (hand-batched passes, models/sequential.py), and the
same network behind a forward of its own, which takes the generic path (torch.func.vmap over
functional_call, autograd); and a small MLP a user writes as a module of their own (10 → 32 → 10,
ReLU, on the same data and settings), which takes the generic path too. Each at 8 and 32 chains, a
fixed budget of 2000 steps.

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
# the sampler's cost per chain-step: without the one-off quadratic floor (llc/diagnostics/quadratic.py), which devinterp has no counterpart of
SETTINGS = dict(CASE.settings, epsilon=1e-6, n_steps=2000, max_steps=2000, mala=False, quadratic_floor=False)


class Hidden(nn.Module):
    """The same network behind a forward of its own: the generic path."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)


class UserMLP(nn.Module):
    """A small MLP as a user would write it: a module with its own forward."""

    def __init__(self, width: int = 32):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.w1 = nn.Parameter(torch.randn(10, width, generator=generator) / math.sqrt(10))
        self.w2 = nn.Parameter(torch.randn(width, 10, generator=generator) / math.sqrt(width))

    def forward(self, x):
        return torch.relu(x @ self.w1) @ self.w2


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
    rows = [("DLN, nn.Sequential stack", model), ("DLN, generic (vmap)", Hidden(model)), ("user MLP, generic (vmap)", UserMLP())]
    networks = {"DLN": model, "user MLP": rows[-1][1]}  # a floor and a devinterp figure per network, not per path
    floors = {name: floor_microseconds(net, data) for name, net in networks.items()}
    print(f"{CASE.name} data, m = {SETTINGS['batch_size']}, {SETTINGS['n_steps']} steps; floors (µs per chain-step): "
          + ", ".join(f"{name} {floor:.2f}" for name, floor in floors.items()))
    print("| chains | model, path | µs per chain-step | ÷ floor | devinterp 1.3.2 | speed-up |")
    print("| --- | --- | --- | --- | --- | --- |")
    for chains in (8, 32):
        theirs = {name: devinterp_microseconds(net, data, chains, args.devinterp_steps) if args.devinterp_steps else None
                  for name, net in networks.items()}
        for name, net in rows:
            network = name.split(",")[0]
            ours = microseconds_per_chain_step(net, data, chains)
            versus = "—" if theirs[network] is None else f"{theirs[network]:.1f} | {theirs[network] / ours:.1f}×"
            print(f"| {chains} | {name} | {ours:.1f} | {ours / floors[network]:.1f}× | {versus} |")


if __name__ == "__main__":
    main()
