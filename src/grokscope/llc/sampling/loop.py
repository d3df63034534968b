"""The sampling loop over a batch of chains: every chain of every checkpoint steps together.

The loop holds three things: the streams (minibatch indices and noise), the kernel (how a state
moves) and the observers (what is recorded), and knows nothing of their insides.

Chain b draws its minibatches from its own generator, seeded by its key (seed, checkpoint id,
chain index), in blocks whose length depends only on the model size, and its noise from its own
stream (llc/sampling/noise.py: on a CPU a function of the key and the step alone), so a chain's numbers do
not depend on what else is batched with it. The loop never syncs with the host: observers write
into device buffers that are copied out once at the end.
"""

from __future__ import annotations

import sys
import time
from typing import Sequence

import torch
from tqdm import tqdm

from ...seeding import derive_seed, generator
from . import graphed
from .fused import FusedSGLDStep
from .kernels import Kernel, KernelState
from .noise import block_length, chain_noise
from .objective import BatchedObjective
from .observers import Observer
from .tree import Tree


class ChainStreams:
    """Per-chain minibatch indices [B, T, m], a block of steps at a time, and standard normal noise
    [B, P], a step at a time."""

    def __init__(self, keys: list[tuple], n_data: Sequence[int], batch_size: int, n_params: int, device: torch.device):
        self.keys, self.n_data, self.batch_size = list(keys), list(n_data), batch_size
        self.n_params, self.device = n_params, device
        self.batch_gens = [generator(*key, "batches") for key in keys]
        self.noise = chain_noise([derive_seed(*key, "noise") for key in keys], n_params, device)

    def keep(self, rows: Sequence[int]) -> "ChainStreams":
        """The streams of chains ``rows`` alone, each continuing where it stands."""
        kept = ChainStreams.__new__(ChainStreams)
        kept.keys, kept.n_data = [self.keys[r] for r in rows], [self.n_data[r] for r in rows]
        kept.batch_size, kept.n_params, kept.device = self.batch_size, self.n_params, self.device
        kept.batch_gens = [self.batch_gens[r] for r in rows]
        kept.noise = self.noise.keep(rows)
        return kept

    def indices(self, length: int) -> torch.Tensor:
        """The next ``length`` minibatches of every chain: [B, length, m] row indices."""
        index = torch.empty(len(self.batch_gens), length, self.batch_size, dtype=torch.long)
        for b, gen in enumerate(self.batch_gens):
            torch.randint(self.n_data[b], (length, self.batch_size), generator=gen, out=index[b])
        return index


def _row_source(data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """What :func:`_rows` reads for data [B, n, ...]: the shared set itself when the chains' data is
    one set expanded (no offsets), else every chain's rows stacked, with chain b's offset b·n."""
    if data.stride(0) == 0:
        return data[0], None
    return data.reshape(-1, *data.shape[2:]), data.shape[1] * torch.arange(data.shape[0], device=data.device).view(-1, 1)


def _rows(table: torch.Tensor, offsets: torch.Tensor | None, index: torch.Tensor) -> torch.Tensor:
    """Chain b's rows index[b] [B, m] of its own data, by one ``index_select`` (several times faster
    than advanced indexing on two dimensions). A step at a time, so the rows are still in cache when
    the step reads them."""
    flat = index if offsets is None else index + offsets
    return table.index_select(0, flat.flatten()).view(*index.shape, *table.shape[1:])


def _noise_views(noise: torch.Tensor, shapes: dict[str, tuple[int, ...]], sizes: list[int]) -> Tree:
    """Noise [B, P] cut into views [B, *shape] per parameter (``sizes``: their element counts; no copies)."""
    return {name: part.view(-1, *shape) for (name, shape), part in zip(shapes.items(), noise.split_with_sizes(sizes, 1))}


LONG_RUN_SECONDS = 600  # a block predicted to take longer says so after its first steps


class LongRunNotice:
    """A timed probe: after the first few steps of a block, one line on the progress stream when the
    rest is predicted to take more than LONG_RUN_SECONDS, so a huge request says so at once
    rather than when its first progress update comes."""

    PROBE_STEPS = 3  # timed after the first step, which also pays one-off costs

    def __init__(self, bar: tqdm, total: int):
        self.bar, self.total, self.began = bar, total, 0.0

    def after(self, done: int) -> bool:
        """Record that ``done`` steps are done; True once the probe is over."""
        if done == 1:
            self.began = time.perf_counter()
        if done < 1 + self.PROBE_STEPS or done >= self.total:
            return done >= self.total
        rest = (time.perf_counter() - self.began) / (done - 1) * (self.total - done)
        if rest > LONG_RUN_SECONDS:
            hours, minutes = divmod(round(rest / 60), 60)
            self.bar.write(f"grokscope: these {self.total} steps will take about {f'{hours} h ' if hours else ''}{minutes} min "
                           f"(timed on the first {done} steps); fewer chains or steps shorten it, Ctrl-C stops it", file=sys.stderr)
        return True


def run_chains(
    objective: BatchedObjective,
    kernel: Kernel,
    state: KernelState,
    fixed: Tree,
    x: torch.Tensor,
    y: torch.Tensor,
    streams: ChainStreams,
    start: int,
    stop: int,
    observers: Sequence[Observer],
    progress: bool = True,
) -> KernelState:
    """Step every chain of ``state`` (name -> [B, ...]) from step ``start`` to ``stop`` with
    ``kernel``, chain b on its own training data x, y [B, n, ...] (its first ``streams.n_data[b]``
    rows) with its own ``streams``; every observer sees each step. Returns the final state; the
    observers hold what was recorded. Calling it again from ``stop`` with the returned state and
    the same streams continues the chains exactly as one longer call would have."""
    shapes = {name: tuple(t.shape[1:]) for name, t in state.w.items()}
    sizes_per_tensor = [int(torch.Size(s).numel()) for s in shapes.values()]
    device = next(iter(state.w.values())).device
    length = block_length(streams.n_params)
    x_rows, y_rows = _row_source(x), _row_source(y)
    bar = tqdm(total=stop - start, desc=kernel.name, unit="step", disable=not progress, file=sys.stderr)
    notice = LongRunNotice(bar, stop - start) if progress else None
    step, noise = start, None

    def rows(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _rows(*x_rows, index), _rows(*y_rows, index)  # chain b's rows of its own data: [B, m, ...]

    capture = graphed.step_capture(device)
    static = None if capture is None or start == stop else graphed.StaticStep(
        objective, kernel, state, fixed, rows, streams.batch_size, lambda t: _noise_views(t, shapes, sizes_per_tensor),
        streams.n_params, capture)
    fused = None if static is not None else FusedSGLDStep.for_loop(kernel, state, streams.noise, observers)
    try:
        while step < stop:
            index = streams.indices(min(length, stop - step)).to(device).transpose(0, 1).contiguous()  # [T, B, m]
            for t in range(index.shape[0]):
                if static is not None:  # the same step over buffers that stay put (llc/sampling/graphed.py)
                    static.index.copy_(index[t])
                    static.noise.copy_(streams.noise.at(step))
                    static.gradient()
                    for observer in observers:
                        observer.observe(step, static.state, static.loss, static.grad, static.step_noise, static.batch)
                    static.update()
                else:
                    batch = rows(index[t])
                    loss, grad = objective.losses_and_grads(state.w, fixed, *batch)
                    if fused is not None:  # the noise drawn inside the update (llc/sampling/fused.py)
                        for observer in observers:
                            observer.observe(step, state, loss, grad, None, batch)
                        fused(grad, step)  # moves state in place
                    else:
                        if (drawn := streams.noise.at(step)) is not noise:  # a refilled tensor keeps its views
                            noise, step_noise = drawn, _noise_views(drawn, shapes, sizes_per_tensor)
                        for observer in observers:
                            observer.observe(step, state, loss, grad, step_noise, batch)
                        state = kernel.step(state, grad, step_noise)
                step += 1
                if notice is not None and notice.after(step - start):
                    notice = None
            bar.update(index.shape[0])
    finally:
        bar.close()
    return state if static is None else static.state
