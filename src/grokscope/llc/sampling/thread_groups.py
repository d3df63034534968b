"""Many small chains on a CPU: the parameter sets of one estimate are split into as many groups as
torch has threads, and each group is sampled by its own worker thread with one intra-op thread.

The chains of the built-in models are small (a [64 × 53] minibatch output per chain), so torch's
intra-op parallelism splits each small kernel across cores and spends much of its time on
synchronisation; one core per group of whole chains keeps every core busy with no
synchronisation at all (torch releases the GIL inside its kernels). Chains never interact and a
chain's numbers do not depend on the thread count (tested), so the split changes no number.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence, TypeVar

import torch

from ...threads import torch_threads

T = TypeVar("T")


def cpu_workers(device: torch.device) -> int:
    """How many groups to sample at once: torch's thread count on a CPU, one on an accelerator."""
    return torch.get_num_threads() if device.type == "cpu" else 1


def balanced_groups(indices: Sequence[int], groups: int) -> list[list[int]]:
    """``indices`` cut into at most ``groups`` contiguous runs whose lengths differ by at most one."""
    groups = max(1, min(groups, len(indices)))
    size, extra = divmod(len(indices), groups)
    out, start = [], 0
    for g in range(groups):
        end = start + size + (1 if g < extra else 0)
        out.append(list(indices[start:end]))
        start = end
    return out


def map_groups(sample: Callable[[list[int], bool, bool], list[T]], indices: Sequence[int], workers: int) -> list[T]:
    """``sample(group, first, alone)`` on each group of ``indices``, the groups in parallel threads
    (each with one intra-op thread) when ``workers`` > 1; the results in the order of ``indices``.
    ``first`` marks the group that may show progress; ``alone`` that it is the only group."""
    groups = balanced_groups(indices, workers)
    if len(groups) == 1:
        return sample(groups[0], True, True)
    with torch_threads(1), ThreadPoolExecutor(len(groups)) as pool:
        parts = list(pool.map(sample, groups, [g == 0 for g in range(len(groups))], [False] * len(groups)))
    return [item for part in parts for item in part]
