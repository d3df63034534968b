"""The sampling loop over a batch of chains: every chain of every checkpoint steps together.

The loop holds three things: the streams (minibatch indices and noise), the kernel (how a state
moves) and the observers (what is recorded), and knows nothing of their insides.

Chain b draws its minibatches and its noise from its own generators, seeded by its key
(seed, checkpoint id, chain index), in blocks whose length depends only on the model size, so a
chain's numbers do not depend on what else is batched with it. The loop never syncs with the host:
observers write into device buffers that are copied out once at the end. When this loop has the
machine to itself (``background_noise``), the next block of streams is drawn by worker threads while
the current block is sampled: two on a CPU (one per core of the machine this was tuned on), up to
eight on an accelerator, where each chain's draws are separate small calls whose cost is on the
host; when other loops run beside it (llc/groups.py), each draws its own streams in turn.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Sequence

import torch
from tqdm import tqdm

from ..seeding import generator
from .kernels import Kernel, KernelState
from .objective import BatchedObjective
from .observers import Observer
from .tree import Tree

NOISE_BLOCK_ELEMENTS = 1 << 22  # per chain: one noise block holds at most this many numbers
NOISE_WORKERS = 2  # on a CPU
ACCELERATOR_NOISE_WORKERS = 8  # at most; on an accelerator the host's cores only launch and draw indices


def block_length(n_params: int) -> int:
    """Steps of noise generated per call: a function of the model size only (never of B)."""
    return max(1, min(64, NOISE_BLOCK_ELEMENTS // max(n_params, 1)))


class ChainStreams:
    """Per-chain minibatch indices [B, T, m] and standard normal noise [B, T, P], block by block."""

    def __init__(self, keys: list[tuple], n_data: Sequence[int], batch_size: int, n_params: int, device: torch.device, background: bool):
        self.n_data, self.batch_size, self.n_params, self.device = n_data, batch_size, n_params, device
        self.batch_gens = [generator(*key, "batches") for key in keys]
        self.noise_gens = [generator(*key, "noise", device=device) for key in keys]
        self.workers = NOISE_WORKERS if device.type == "cpu" else min(ACCELERATOR_NOISE_WORKERS, os.cpu_count() or 1)
        self.pool = ThreadPoolExecutor(self.workers) if background and self.workers > 1 else None

    def _fill(self, rows: range, index: torch.Tensor, noise: torch.Tensor) -> None:
        length = noise.shape[1]
        for b in rows:
            torch.randint(self.n_data[b], (length, self.batch_size), generator=self.batch_gens[b], out=index[b])
            torch.randn(length, self.n_params, generator=self.noise_gens[b], device=self.device, out=noise[b])

    def request(self, length: int) -> tuple[torch.Tensor, torch.Tensor, list[Future]]:
        """Start generating the next ``length`` steps; wait on the futures before use."""
        chains = len(self.noise_gens)
        index = torch.empty(chains, length, self.batch_size, dtype=torch.long)
        noise = torch.empty(chains, length, self.n_params, device=self.device)
        if self.pool is None:
            self._fill(range(chains), index, noise)
            return index, noise, []
        futures = [self.pool.submit(self._fill, range(w, chains, self.workers), index, noise) for w in range(self.workers)]
        return index, noise, futures

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


def _noise_views(noise: torch.Tensor, shapes: dict[str, tuple[int, ...]]) -> Tree:
    """A block of noise [B, T, P] cut into views [B, T, *shape] per parameter (no copies)."""
    out, offset = {}, 0
    for name, shape in shapes.items():
        size = int(torch.Size(shape).numel())
        out[name] = noise[:, :, offset : offset + size].unflatten(2, shape) if shape else noise[:, :, offset]
        offset += size
    return out


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
    background_noise: bool = True,
    sizes: Sequence[int] | None = None,
) -> KernelState:
    """Step every chain of ``state`` (name -> [B, ...]) ``n_steps`` times with ``kernel``, chain b
    on its own training data x, y [B, n, ...] (its first ``sizes[b]`` rows; default all) with its own
    streams (``keys[b]``); every observer
    sees each step. Returns the final state; the observers hold what was recorded."""
    shapes = {name: tuple(t.shape[1:]) for name, t in state.w.items()}
    n_chains = len(keys)
    n_params = sum(int(torch.Size(s).numel()) for s in shapes.values())
    device = next(iter(state.w.values())).device
    sizes = list(sizes) if sizes is not None else [int(y.shape[1])] * n_chains
    streams = ChainStreams(keys, sizes, batch_size, n_params, device, background_noise)
    rows = torch.arange(n_chains, device=device).view(n_chains, 1, 1)
    length = block_length(n_params)
    pending = streams.request(min(length, n_steps))
    bar = tqdm(total=n_steps, desc=kernel.name, unit="step", disable=not progress, file=sys.stderr)
    step = 0
    try:
        while step < n_steps:
            index, noise, futures = pending
            for future in futures:
                future.result()
            block = index.shape[1]
            if step + block < n_steps:
                pending = streams.request(min(length, n_steps - step - block))
            index = index.to(device)
            xs, ys = x[rows, index], y[rows, index]  # chain b's rows of its own data: [B, T, m, ...]
            views = _noise_views(noise, shapes)
            for t in range(block):
                batch = (xs[:, t], ys[:, t])
                loss, grad = objective.losses_and_grads(state.w, fixed, *batch)
                step_noise = {name: view[:, t] for name, view in views.items()}
                for observer in observers:
                    observer.observe(step, state, loss, grad, step_noise, batch)
                state = kernel.step(state, grad, step_noise)
                step += 1
            bar.update(block)
    finally:
        bar.close()
        streams.close()
    return state
