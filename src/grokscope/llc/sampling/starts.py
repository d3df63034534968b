"""Where the chains start. Every chain starts at w*, the point whose LLC is estimated; with
``start_spread`` = s > 0, every second chain of a parameter set (chains 1, 3, 5, …) starts at
w* + (s/√γ)·ξ instead, ξ ~ N(0, I) drawn from the chain's own seeded stream (so a chain's start does
not depend on what else is batched with it), and only where the chain may move (its mask).

Chains that all start at one point can agree with each other, and look settled, while they are
still in the region they reached first; convergence diagnostics need starting points spread out
relative to the target (Gelman & Rubin 1992; Vehtari et al. 2021). Chains started apart that
do not meet the others disagree in R-hat and in the halves, and the estimate is not `ok`.
"""

from __future__ import annotations

import torch

from ...seeding import generator
from .tree import Tree


def spread_starts(w: Tree, keys: list[tuple], spread: float, gamma: torch.Tensor, masks: Tree) -> Tree:
    """``w`` (name -> [B, ...], each chain at its w*) with every second chain moved by
    (spread/√γ_b)·ξ_b; chain b's key is keys[b], its index among its set's chains the key's last part.
    ``masks``: name -> bool [...] or [B, ...], where the chains may move."""
    names = list(w)
    sizes = [w[n][0].numel() for n in names]
    moved = {n: t.clone() for n, t in w.items()}
    scales = (spread / gamma.sqrt()).tolist()  # once, before any chain moves
    for b, key in enumerate(keys):
        if key[-1] % 2 == 0:
            continue
        scale = scales[b]
        xi = torch.randn(sum(sizes), generator=generator(*key, "start")).split(sizes)
        for name, part in zip(names, xi):
            step = scale * part.view_as(w[name][b]).to(w[name].device, w[name].dtype)
            if name in masks:
                mask = masks[name]
                step = step * (mask[b] if mask.dim() == w[name].dim() else mask)
            moved[name][b] += step
    return moved
