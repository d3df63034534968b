"""Localised, tempered SGLD (Lau et al. 2023, arXiv 2308.12108, after Welling & Teh 2011):

    w ← w − (ε/2) [ nβ ∇L_B(w) + γ (w − w*) + wd·w ] + √ε · ξ,   ξ ~ N(0, I)

fused into three passes per tensor, with every coefficient per chain (a [B, 1, ...] tensor):

    w' = (1 − ε(γ + wd)/2)·w + (εγ/2)·w* − (ε nβ/2)·∇L_B(w) + √ε·ξ

The anchor term (εγ/2)·w* and every coefficient are computed once, in ``init``; ``terms`` is four
foreach passes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..tree import Tree, leaves
from .base import ChainSettings, KernelOptions, KernelState, StepTerms


@dataclass(frozen=True)
class SGLDState(KernelState):
    """The coefficients of every tensor's update, per chain and shaped to broadcast against it."""

    shrink: Tree  # 1 − ε(γ + wd)/2
    pull: Tree  # (εγ/2)·w*
    gradient_scale: Tree  # ε nβ / 2
    localisation_scale: Tree  # εγ / 2
    decay_scale: Tree  # ε wd / 2
    noise_scale: Tree  # √ε


class SGLD:
    """The default kernel: plain localised SGLD."""

    name = "sgld"
    Options = KernelOptions  # no settings of its own

    @classmethod
    def from_options(cls, options: KernelOptions) -> "SGLD":
        return cls()

    def init(self, anchors: Tree, settings: ChainSettings) -> SGLDState:
        s = settings
        half = 0.5 * s.epsilon

        def shaped(values: torch.Tensor) -> Tree:
            return {n: values.to(a.dtype).view(-1, *([1] * (a.dim() - 1))) for n, a in anchors.items()}

        localisation = shaped(half * s.gamma)
        return SGLDState(
            w={n: a.clone() for n, a in anchors.items()}, anchor=anchors, settings=settings,
            shrink=shaped(1.0 - half * (s.gamma + s.weight_decay)),
            pull={n: a * localisation[n] for n, a in anchors.items()},
            gradient_scale=shaped(half * s.nbeta), localisation_scale=localisation,
            decay_scale=shaped(half * s.weight_decay), noise_scale=shaped(s.epsilon.sqrt()),
        )

    def step(self, state: SGLDState, loss_grad: Tree, noise: Tree) -> SGLDState:
        # one dispatch per pass over all tensors (torch's foreach ops, as torch.optim uses)
        names = list(state.w)
        out = torch._foreach_addcmul(leaves(state.pull, names), leaves(state.w, names), leaves(state.shrink, names))
        torch._foreach_addcmul_(out, leaves(loss_grad, names), leaves(state.gradient_scale, names), value=-1)
        torch._foreach_addcmul_(out, leaves(noise, names), leaves(state.noise_scale, names))
        return replace(state, w=dict(zip(names, out)))

    def terms(self, state: SGLDState, loss_grad: Tree) -> StepTerms:
        names = list(state.w)
        w = leaves(state.w, names)
        localisation = torch._foreach_sub(w, leaves(state.anchor, names))
        torch._foreach_mul_(localisation, leaves(state.localisation_scale, names))
        return StepTerms(
            gradient=dict(zip(names, torch._foreach_mul(leaves(loss_grad, names), leaves(state.gradient_scale, names)))),
            localisation=dict(zip(names, localisation)),
            weight_decay=dict(zip(names, torch._foreach_mul(w, leaves(state.decay_scale, names)))),
            noise_scale=state.noise_scale,
        )
