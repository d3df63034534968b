"""The training data of an estimate's parameter sets, stacked one set per row, and the
full-batch loss L_n(w*) (and its gradient) of each set on its own data."""

from __future__ import annotations

import torch

from ...errors import ConfigError
from .objective import BatchedObjective
from .tree import Tree, tree_map

FULL_BATCH_CHUNK = 8192  # rows of data per chunk of a full-batch evaluation


def stack_data(data: object, k: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Inputs [K, n, ...], targets [K, n, ...] for K parameter sets, and the rows each set uses (a
    shared set is expanded, not copied; smaller sets are padded with their first row, never drawn)."""
    if isinstance(data, tuple):
        x, y = data
        return x.to(device).expand(k, *x.shape), y.to(device).expand(k, *y.shape), [int(y.shape[0])] * k
    sets = list(data)
    if len(sets) != k:
        raise ConfigError(f"data: {len(sets)} training sets for {k} parameter sets")
    if len({(tuple(x.shape[1:]), tuple(y.shape[1:])) for x, y in sets}) != 1 or any(x.shape[0] != y.shape[0] for x, y in sets):
        raise ConfigError("data: the training sets must have rows of one shape, and as many targets as inputs")
    sizes = [int(y.shape[0]) for _, y in sets]
    if min(sizes) == 0:
        raise ConfigError(f"data: training set {sizes.index(0)} is empty")

    def padded(t: torch.Tensor) -> torch.Tensor:
        return torch.cat([t, t[:1].expand(max(sizes) - t.shape[0], *t.shape[1:])])

    return (torch.stack([padded(x) for x, _ in sets]).to(device), torch.stack([padded(y) for _, y in sets]).to(device), sizes)


def full_batch_loss_and_grad(
    objective: BatchedObjective, anchors: Tree, fixed: Tree, x: torch.Tensor, y: torch.Tensor, sizes: list[int], want_grad: bool
) -> tuple[torch.Tensor, Tree | None]:
    """L_n(w*) [K] (and the tree of ∇L_n(w*)) over each set's first sizes[k] rows of x, y [K, n, ...],
    in chunks of rows; sets of different sizes one at a time."""
    if len(set(sizes)) > 1:
        parts = [full_batch_loss_and_grad(objective, *(tree_map(lambda t: t[k : k + 1], tree) for tree in (anchors, fixed)),
                                           x[k : k + 1, :n], y[k : k + 1, :n], [n], want_grad) for k, n in enumerate(sizes)]
        grads = {name: torch.cat([g[name] for _, g in parts]) for name in anchors} if want_grad else None
        return torch.cat([loss for loss, _ in parts]), grads
    k, n = y.shape[0], y.shape[1]
    total = torch.zeros(k, dtype=torch.float64)
    grad = tree_map(torch.zeros_like, anchors) if want_grad else None
    for start in range(0, n, FULL_BATCH_CHUNK):
        xb, yb = x[:, start : start + FULL_BATCH_CHUNK], y[:, start : start + FULL_BATCH_CHUNK]
        weight = yb.shape[1] / n
        if want_grad:
            loss, g = objective.losses_and_grads(anchors, fixed, xb, yb)
            grad = tree_map(lambda acc, gi: acc.add_(gi, alpha=weight), grad, g)
        else:
            with torch.no_grad():
                loss = objective.losses(anchors, fixed, xb, yb)
        total += weight * loss.double().cpu()
    return total, grad
