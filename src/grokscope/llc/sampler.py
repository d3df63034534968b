"""The sampling loop over a batch of chains: every chain of every checkpoint steps together.

The loop holds three things: the streams (minibatch indices and noise), the kernel (how a state
moves) and the observers (what is recorded), and knows nothing of their insides.

Chain b draws its minibatches from its own generator, seeded by its key (seed, checkpoint id,
chain index), in blocks whose length depends only on the model size, and its noise from its own
stream (llc/noise.py: on a CPU a function of the key and the step alone), so a chain's numbers do
not depend on what else is batched with it. The loop never syncs with the host: observers write
into device buffers that are copied out once at the end.
"""

from __future__ import annotations

import sys
from typing import Sequence

import torch
from tqdm import tqdm

from ..seeding import derive_seed, generator
from .kernels import Kernel, KernelState
from .noise import block_length, chain_noise
from .objective import BatchedObjective
from .observers import Observer
from .tree import Tree


class ChainStreams:
    """Per-chain minibatch indices [B, T, m], a block of steps at a time, and standard normal noise
    [B, P], a step at a time."""

    def __init__(self, keys: list[tuple], n_data: Sequence[int], batch_size: int, n_params: int, device: torch.device):
        self.n_data, self.batch_size = n_data, batch_size
        self.batch_gens = [generator(*key, "batches") for key in keys]
        self.noise = chain_noise([derive_seed(*key, "noise") for key in keys], n_params, device)

    def indices(self, length: int) -> torch.Tensor:
        """The next ``length`` minibatches of every chain: [B, length, m] row indices."""
        index = torch.empty(len(self.batch_gens), length, self.batch_size, dtype=torch.long)
        for b, gen in enumerate(self.batch_gens):
            torch.randint(self.n_data[b], (length, self.batch_size), generator=gen, out=index[b])
        return index


def _noise_views(noise: torch.Tensor, shapes: dict[str, tuple[int, ...]], sizes: list[int]) -> Tree:
    """Noise [B, P] cut into views [B, *shape] per parameter (``sizes``: their element counts; no copies)."""
    return {name: part.view(-1, *shape) for (name, shape), part in zip(shapes.items(), noise.split_with_sizes(sizes, 1))}


def run_chains(
    objective: BatchedObjective,
    kernel: Kernel,
    state: KernelState,
    fixed: Tree,
    x: torch.Tensor,
    y: torch.Tensor,
    keys: list[tuple],
    n_steps: int,
    batch_size: int,
    observers: Sequence[Observer],
    progress: bool = True,
    sizes: Sequence[int] | None = None,
) -> KernelState:
    """Step every chain of ``state`` (name -> [B, ...]) ``n_steps`` times with ``kernel``, chain b
    on its own training data x, y [B, n, ...] (its first ``sizes[b]`` rows; default all) with its own
    streams (``keys[b]``); every observer
    sees each step. Returns the final state; the observers hold what was recorded."""
    shapes = {name: tuple(t.shape[1:]) for name, t in state.w.items()}
    n_chains = len(keys)
    sizes_per_tensor = [int(torch.Size(s).numel()) for s in shapes.values()]
    n_params = sum(sizes_per_tensor)
    device = next(iter(state.w.values())).device
    sizes = list(sizes) if sizes is not None else [int(y.shape[1])] * n_chains
    streams = ChainStreams(keys, sizes, batch_size, n_params, device)
    rows = torch.arange(n_chains, device=device).view(n_chains, 1, 1)
    length = block_length(n_params)
    bar = tqdm(total=n_steps, desc=kernel.name, unit="step", disable=not progress, file=sys.stderr)
    step, noise = 0, None
    try:
        while step < n_steps:
            index = streams.indices(min(length, n_steps - step)).to(device)
            xs, ys = x[rows, index], y[rows, index]  # chain b's rows of its own data: [B, T, m, ...]
            for t in range(index.shape[1]):
                batch = (xs[:, t], ys[:, t])
                loss, grad = objective.losses_and_grads(state.w, fixed, *batch)
                if (drawn := streams.noise.at(step)) is not noise:  # a refilled tensor keeps its views
                    noise, step_noise = drawn, _noise_views(drawn, shapes, sizes_per_tensor)
                for observer in observers:
                    observer.observe(step, state, loss, grad, step_noise, batch)
                state = kernel.step(state, grad, step_noise)
                step += 1
            bar.update(index.shape[1])
    finally:
        bar.close()
    return state
