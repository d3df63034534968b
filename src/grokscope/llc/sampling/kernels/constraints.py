"""Constraints that wrap any kernel: element masks and the orthogonal-gradient restriction.

Each wrapper runs the inner kernel's step and then constrains the new position, so a new kernel
gets both for free."""

from __future__ import annotations

from dataclasses import replace

import torch

from ..tree import (
    Tree,
    per_chain_dot,
    per_chain_squared_norm,
    scale_per_chain,
    tree_map,
)
from .base import ChainSettings, Kernel, KernelState, StepTerms


class _Constraint:
    """A kernel wrapped by a constraint: the inner kernel's name, state and start, its step then
    the constraint (``step``, in each subclass)."""

    def __init__(self, inner: Kernel):
        self.inner, self.name = inner, inner.name

    def init(self, anchors: Tree, settings: ChainSettings) -> KernelState:
        return self.inner.init(anchors, settings)

    def terms(self, state: KernelState, loss_grad: Tree) -> StepTerms:
        return self.inner.terms(state, loss_grad)


class Masked(_Constraint):
    """Only the entries where ``masks[name]`` is True move; the others stay at w* exactly.
    Masks are bool tensors of the parameter's shape, or [B, ...] for one mask per chain; tensors
    without a mask move freely."""

    def __init__(self, inner: Kernel, masks: dict[str, torch.Tensor]):
        super().__init__(inner)
        self.masks = masks

    def step(self, state: KernelState, loss_grad: Tree, noise: Tree) -> KernelState:
        new = self.inner.step(state, loss_grad, noise)
        w = {n: torch.where(self.masks[n], t, state.anchor[n]) if n in self.masks else t for n, t in new.w.items()}
        return replace(new, w=w)

    def terms(self, state: KernelState, loss_grad: Tree) -> StepTerms:
        terms = self.inner.terms(state, loss_grad)

        def masked(tree: Tree) -> Tree:
            return {n: t * self.masks[n] if n in self.masks else t for n, t in tree.items()}

        return StepTerms(*(masked(getattr(terms, f)) for f in ("gradient", "localisation", "weight_decay", "noise_scale")))


class OrthogonalToGradient(_Constraint):
    """After each step, remove the component of (w − w*) along the unit gradient of L_n at w*
    (the original study's ``restrict_to_orth_grad``): chains explore the level set's tangent."""

    def __init__(self, inner: Kernel, directions: Tree):
        super().__init__(inner)
        self.directions = directions

    def step(self, state: KernelState, loss_grad: Tree, noise: Tree) -> KernelState:
        new = self.inner.step(state, loss_grad, noise)
        return replace(new, w=project_out(new.w, state.anchor, self.directions))


def unit_directions(grad: Tree) -> Tree:
    """Each chain's gradient scaled to unit norm; a zero gradient stays zero (no projection)."""
    norm = per_chain_squared_norm(list(grad.values())).sqrt()
    inverse = torch.where(norm > 0, 1.0 / norm.clamp_min(torch.finfo(norm.dtype).tiny), torch.zeros_like(norm))
    return scale_per_chain(grad, inverse)


def project_out(w: Tree, anchor: Tree, direction: Tree) -> Tree:
    """Remove the component of (w − w*) along the unit ``direction``."""
    along = per_chain_dot(tree_map(torch.sub, w, anchor), direction)
    return tree_map(torch.sub, w, scale_per_chain(direction, along))
