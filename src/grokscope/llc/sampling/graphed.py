"""A step of the sampling loop replayed as CUDA graphs (``torch.cuda.CUDAGraph``).

On a GPU the step of small chains is bound by kernel launches, not by work (72 launches a step for
the MLP, 162–166 for the transformers, the GPU busy 5–13% of the time: docs/gpu.md). Captured once
and replayed, a step costs a few launches. The step is cut in two where the observers look:

    gradient: the step's minibatch rows, the loss and its gradient           (graph 1)
    the observers record that step, eagerly, reading graph 1's outputs
    update:   the kernel's move, written back into the state's own buffers   (graph 2)

Everything a graph reads lives in buffers made before the capture: the step's minibatch indices
and noise (copied in before each replay), the data, the state. A new batch shape (chains leaving
the batch between blocks of steps) is a new ``StaticStep``, captured again. Off a GPU the same
object runs its two functions eagerly, which is how the tests check it against the plain loop, bit
for bit, on a CPU.
"""

from __future__ import annotations

import os
from dataclasses import fields
from typing import Callable

import torch

from .kernels import Kernel, KernelState
from .objective import BatchedObjective
from .tree import Tree

Capture = Callable[[Callable[[], None]], Callable[[], None]]


def eager(fn: Callable[[], None]) -> Callable[[], None]:
    """No capture: the "replay" is the function itself."""
    return fn


def cuda_graph(fn: Callable[[], None]) -> Callable[[], None]:
    """``fn`` captured as a CUDA graph, after two warm-up calls on a side stream (as
    ``torch.cuda.graphs`` asks: libraries allocate their workspaces there); returns its replay."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn(), fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def step_capture(device: torch.device) -> Capture | None:
    """How the loop's step is captured on ``device``: as CUDA graphs on a GPU (unless
    ``GROKSCOPE_CUDA_GRAPHS=0``), else not at all (None: the plain loop)."""
    if device.type == "cuda" and os.environ.get("GROKSCOPE_CUDA_GRAPHS", "1") != "0":
        return cuda_graph
    return None


def _trees(state: KernelState) -> list[str]:
    return [f.name for f in fields(state) if isinstance(getattr(state, f.name), dict)]


class StaticStep:
    """One step over buffers that stay put: write ``index`` [B, m] and ``noise`` [B, P], call
    ``gradient()``, read ``loss``, ``grad``, ``batch`` and ``state`` (the observers' view of the
    step), then call ``update()``, which moves ``state`` in place."""

    def __init__(self, objective: BatchedObjective, kernel: Kernel, state: KernelState, fixed: Tree,
                 rows: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], batch_size: int,
                 noise_views: Callable[[torch.Tensor], Tree], n_params: int, capture: Capture):
        w = next(iter(state.w.values()))
        self.objective, self.kernel, self.fixed, self.rows = objective, kernel, fixed, rows
        self.state = state
        self.index = torch.zeros(w.shape[0], batch_size, dtype=torch.long, device=w.device)
        self.noise = torch.zeros(w.shape[0], n_params, dtype=w.dtype, device=w.device)
        self.step_noise = noise_views(self.noise)
        saved = {name: {n: t.clone() for n, t in getattr(state, name).items()} for name in _trees(state)}
        self.gradient = capture(self._gradient)
        self.update = capture(self._update)
        for name, tree in saved.items():  # undo the warm-up's moves: the chains start where they stood
            for n, t in tree.items():
                getattr(self.state, name)[n].copy_(t)

    def _gradient(self) -> None:
        self.batch = self.rows(self.index)
        self.loss, self.grad = self.objective.losses_and_grads(self.state.w, self.fixed, *self.batch)

    def _update(self) -> None:
        moved = self.kernel.step(self.state, self.grad, self.step_noise)
        for name in _trees(moved):
            before, after = getattr(self.state, name), getattr(moved, name)
            if after is not before:
                torch._foreach_copy_([before[n] for n in after], list(after.values()))
