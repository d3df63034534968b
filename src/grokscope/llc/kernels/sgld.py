"""Localised, tempered SGLD (Lau et al. 2023, arXiv 2308.12108, after Welling & Teh 2011):

    w ← w − (ε/2) [ nβ ∇L_B(w) + γ (w − w*) + wd·w ] + √ε · ξ,   ξ ~ N(0, I)

fused into three passes per tensor, with every coefficient per chain (a [B, 1, ...] tensor):

    w' = (1 − ε(γ + wd)/2)·w + (εγ/2)·w* − (ε nβ/2)·∇L_B(w) + √ε·ξ

The anchor term (εγ/2)·w* is computed once, in ``init``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..tree import Tree
from .base import ChainSettings, KernelState, StepTerms


@dataclass(frozen=True)
class SGLDState(KernelState):
    pull: Tree  # (εγ/2)·w*
    shrink: Tree  # 1 − ε(γ + wd)/2, per chain, shaped to broadcast against each tensor
    grad_scale: Tree  # −ε nβ / 2
    noise_scale: Tree  # √ε


class SGLD:
    """The default kernel: plain localised SGLD."""

    name = "sgld"

    def init(self, anchors: Tree, settings: ChainSettings) -> SGLDState:
        s = settings
        shrink = 1.0 - 0.5 * s.epsilon * (s.gamma + s.weight_decay)
        pull, grad_scale, noise_scale = 0.5 * s.epsilon * s.gamma, -0.5 * s.epsilon * s.nbeta, s.epsilon.sqrt()

        def shaped(values: torch.Tensor) -> Tree:
            return {n: values.to(a.dtype).view(-1, *([1] * (a.dim() - 1))) for n, a in anchors.items()}

        pulls = shaped(pull)
        return SGLDState(
            w={n: a.clone() for n, a in anchors.items()}, anchor=anchors, settings=settings,
            pull={n: a * pulls[n] for n, a in anchors.items()},
            shrink=shaped(shrink), grad_scale=shaped(grad_scale), noise_scale=shaped(noise_scale),
        )

    def step(self, state: SGLDState, loss_grad: Tree, noise: Tree) -> SGLDState:
        names = list(state.w)

        def column(tree: Tree) -> list[torch.Tensor]:
            return [tree[n] for n in names]

        # one dispatch per pass over all tensors (torch's foreach ops, as torch.optim uses)
        out = torch._foreach_addcmul(column(state.pull), column(state.w), column(state.shrink))
        torch._foreach_addcmul_(out, column(loss_grad), column(state.grad_scale))
        torch._foreach_addcmul_(out, column(noise), column(state.noise_scale))
        return replace(state, w=dict(zip(names, out)))

    def terms(self, state: SGLDState, loss_grad: Tree) -> StepTerms:
        s = state.settings
        half = {n: 0.5 * s.per_element("epsilon", t, t.dtype) for n, t in state.w.items()}
        return StepTerms(
            gradient={n: half[n] * s.per_element("nbeta", g, g.dtype) * g for n, g in loss_grad.items()},
            localisation={n: half[n] * s.per_element("gamma", w, w.dtype) * (w - state.anchor[n]) for n, w in state.w.items()},
            weight_decay={n: half[n] * s.per_element("weight_decay", w, w.dtype) * w for n, w in state.w.items()},
            noise_scale=state.noise_scale,
        )
