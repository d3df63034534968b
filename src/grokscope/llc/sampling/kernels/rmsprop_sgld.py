"""RMSprop-preconditioned SGLD (REFERENCE §7; Li et al. 2016, arXiv 1512.07666; devinterp's
``rmsprop_sgld``, which Hitchcock & Hoogland 2025, arXiv 2507.21449, found the most faithful of the
common samplers on deep linear networks). Per element, with g the minibatch loss gradient:

    V ← αV + (1 − α) g²   (V starts at 0),   G = 1 / (√V + eps)
    w ← w − (ε/2) G ⊙ (nβ g + γ (w − w*) + wd·w) + √ε · √G ⊙ ξ

Defaults α = 0.99, eps = 0.1 (devinterp's); no gradient-correction term. Every drift term is
preconditioned, weight decay included (as devinterp's factory does): the noise is scaled by √G, so
only a drift of G ⊙ ∇U keeps exp(−U) as the target, with U's prior term (wd/2)‖w‖² as stated.

A G that follows the recent gradients depends on where the chain has been, and without the
correction term (Li et al. drop it) the chain's stationary law is not exp(−U): λ̂ reads high by an
amount that does not shrink with ε and grows the faster G adapts (docs/validation.md). With
``rmsprop_adapt_steps`` = k > 0, V follows the gradients for a chain's first k steps only and G is
fixed after them: a constant metric, under which exp(−U) is the target again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..tree import Tree
from pydantic import Field

from .base import ChainSettings, KernelOptions, KernelState, StepTerms


@dataclass(frozen=True)
class RMSpropState(KernelState):
    square_avg: Tree  # V
    adapting: Tree  # steps each chain's V still follows the gradients ([B, 1, ...] per tensor); {}: always


class RMSpropOptions(KernelOptions):
    rmsprop_alpha: float = Field(0.99, gt=0.0, lt=1.0, description="decay of the squared-gradient average")
    rmsprop_eps: float = Field(0.1, gt=0.0, description="added to √V in the preconditioner")
    rmsprop_adapt_steps: int = Field(0, ge=0, description="V follows the gradients for a chain's first this many steps, "
                                     "then the preconditioner stays fixed; 0: it always follows them, as devinterp's")


class RMSpropSGLD:
    name = "rmsprop_sgld"
    Options = RMSpropOptions

    def __init__(self, alpha: float = 0.99, eps: float = 0.1, adapt_steps: int = 0):
        self.alpha, self.eps, self.adapt_steps = alpha, eps, adapt_steps

    @classmethod
    def from_options(cls, options: RMSpropOptions) -> "RMSpropSGLD":
        return cls(options.rmsprop_alpha, options.rmsprop_eps, options.rmsprop_adapt_steps)

    def init(self, anchors: Tree, settings: ChainSettings) -> RMSpropState:
        adapting = {} if not self.adapt_steps else {
            n: torch.full((a.shape[0],) + (1,) * (a.dim() - 1), float(self.adapt_steps), device=a.device) for n, a in anchors.items()}
        return RMSpropState(
            w={n: a.clone() for n, a in anchors.items()}, anchor=anchors, settings=settings,
            square_avg={n: torch.zeros_like(a) for n, a in anchors.items()}, adapting=adapting,
        )

    def _preconditioner(self, state: RMSpropState, loss_grad: Tree) -> tuple[Tree, Tree]:
        """V after this step's gradient (unchanged once a chain's adapting steps are spent), and G = 1 / (√V + eps)."""
        square_avg = {n: torch.addcmul(v * self.alpha, loss_grad[n], loss_grad[n], value=1 - self.alpha) for n, v in state.square_avg.items()}
        if state.adapting:
            square_avg = {n: torch.where(state.adapting[n] > 0, v, state.square_avg[n]) for n, v in square_avg.items()}
        return square_avg, {n: v.sqrt().add_(self.eps).reciprocal_() for n, v in square_avg.items()}

    def step(self, state: RMSpropState, loss_grad: Tree, noise: Tree) -> RMSpropState:
        square_avg, g_inv = self._preconditioner(state, loss_grad)
        terms = self._terms(state, loss_grad, g_inv)
        w = {}
        for n, wi in state.w.items():
            out = wi - terms.gradient[n] - terms.localisation[n] - terms.weight_decay[n]
            w[n] = out.addcmul_(terms.noise_scale[n], noise[n])
        adapting = {n: (left - 1).clamp_(min=0) for n, left in state.adapting.items()} if state.adapting else state.adapting
        return replace(state, w=w, square_avg=square_avg, adapting=adapting)

    def terms(self, state: RMSpropState, loss_grad: Tree) -> StepTerms:
        return self._terms(state, loss_grad, self._preconditioner(state, loss_grad)[1])

    def _terms(self, state: RMSpropState, loss_grad: Tree, g_inv: Tree) -> StepTerms:
        s = state.settings
        half = {n: 0.5 * s.per_element("epsilon", t, t.dtype) for n, t in state.w.items()}
        return StepTerms(
            gradient={n: half[n] * s.per_element("nbeta", g, g.dtype) * g_inv[n] * g for n, g in loss_grad.items()},
            localisation={n: half[n] * s.per_element("gamma", w, w.dtype) * g_inv[n] * (w - state.anchor[n]) for n, w in state.w.items()},
            weight_decay={n: half[n] * s.per_element("weight_decay", w, w.dtype) * g_inv[n] * w for n, w in state.w.items()},
            noise_scale={n: (2 * half[n] * g_inv[n]).sqrt() for n in state.w},
        )
