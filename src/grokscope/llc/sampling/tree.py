"""Parameter trees: a dict of name -> tensor with a leading chain dimension [B, ...].

Sampled parameters stay as separate contiguous tensors (so the model reads them without copies and
autograd returns their gradients without a concatenation); these helpers map elementwise functions
over them and reduce per chain.
"""

from __future__ import annotations

from typing import Callable

import torch

Tree = dict[str, torch.Tensor]


def leaves(tree: Tree, names: list[str]) -> list[torch.Tensor]:
    """The tensors of ``tree`` in the order of ``names`` (the argument lists of torch's foreach ops)."""
    return [tree[name] for name in names]


def tree_map(fn: Callable[..., torch.Tensor], *trees: Tree) -> Tree:
    return {name: fn(*(tree[name] for tree in trees)) for name in trees[0]}


def per_chain_dot(a: Tree, b: Tree) -> torch.Tensor:
    return sum((a[name] * b[name]).flatten(1).sum(-1) for name in a)


def per_chain_squared_norm(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Σ t² over every element of each chain [B], as one concatenation and one reduction (the
    observers' measurements are dominated by the number of operations, not their size)."""
    flat = torch.cat([t.flatten(1) for t in tensors], dim=1)
    return torch.linalg.vecdot(flat, flat)


def scale_per_chain(tree: Tree, factor: torch.Tensor) -> Tree:
    """Multiply chain b's parameters by factor[b]."""
    return {name: t * factor.view(-1, *([1] * (t.dim() - 1))) for name, t in tree.items()}


def flatten(tree: Tree) -> torch.Tensor:
    """[B, P] (for snapshots and reports, not for the hot loop)."""
    return torch.cat([t.flatten(1) for t in tree.values()], dim=1)
