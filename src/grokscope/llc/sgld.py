"""The SGLD step, as small composable pieces over parameter trees (name -> [B, ...] tensors).

Following blackjax's split (``sgmcmc/sgld.py``, ``diffusions.py``): the gradient of the potential,
one Euler step of the overdamped Langevin diffusion, and optional constraints applied after it.
Lau et al. 2023 (arXiv 2308.12108), the localised SGLD update:

    w ← w − (ε/2) [ nβ ∇L_B(w) + γ (w − w*) + wd·w ] + N(0, ε I)
"""

from __future__ import annotations

import torch

from .tree import Tree, per_chain_dot, per_chain_sum, scale_per_chain, tree_map


def potential_gradient(loss_grad: Tree, w: Tree, anchor: Tree, nbeta: float, gamma: float, weight_decay: float) -> Tree:
    """∇U(w) for U(w) = nβ L(w) + (γ/2)||w − w*||² + (wd/2)||w||²."""

    def one(g: torch.Tensor, wi: torch.Tensor, ai: torch.Tensor) -> torch.Tensor:
        out = g * nbeta
        if gamma:
            out = out.add_(wi - ai, alpha=gamma)
        if weight_decay:
            out = out.add_(wi, alpha=weight_decay)
        return out

    return tree_map(one, loss_grad, w, anchor)


def potential(loss: torch.Tensor, w: Tree, anchor: Tree, nbeta: float, gamma: float, weight_decay: float) -> torch.Tensor:
    """U(w) per chain [B]: the negative log density of the localised tempered posterior."""
    value = loss * nbeta
    if gamma:
        value = value + 0.5 * gamma * per_chain_sum(tree_map(lambda a, b: (a - b).square(), w, anchor))
    if weight_decay:
        value = value + 0.5 * weight_decay * per_chain_sum(tree_map(torch.square, w))
    return value


def langevin_step(w: Tree, grad_u: Tree, epsilon: float, noise: Tree) -> Tree:
    """One Euler–Maruyama step of dw = −½∇U dt + dB with step ε and standard normal ``noise``."""
    root = epsilon**0.5
    return tree_map(lambda wi, gi, ni: (wi - (0.5 * epsilon) * gi).add_(ni, alpha=root), w, grad_u, noise)


class LocalizedLangevin:
    """:func:`langevin_step` on :func:`potential_gradient`, fused into three passes per tensor:

        w' = (1 − ε(γ + wd)/2)·w + (εγ/2)·w* − (ε nβ/2)·∇L_B(w) + √ε·ξ

    The anchor term (εγ/2)·w* is computed once. Equal to the composed pieces up to rounding."""

    def __init__(self, anchor: Tree, nbeta: float, gamma: float, weight_decay: float, epsilon: float):
        self.shrink = 1.0 - 0.5 * epsilon * (gamma + weight_decay)
        self.pull = tree_map(lambda a: a * (0.5 * epsilon * gamma), anchor)
        self.grad_scale = -0.5 * epsilon * nbeta
        self.noise_scale = epsilon**0.5

    def __call__(self, w: Tree, loss_grad: Tree, noise: Tree) -> Tree:
        names = list(w)
        # one dispatch per pass over all tensors (torch's foreach ops, as torch.optim uses)
        out = torch._foreach_add([self.pull[n] for n in names], [w[n] for n in names], alpha=self.shrink)
        torch._foreach_add_(out, [loss_grad[n] for n in names], alpha=self.grad_scale)
        torch._foreach_add_(out, [noise[n] for n in names], alpha=self.noise_scale)
        return dict(zip(names, out))


def unit_directions(grad: Tree) -> Tree:
    """Each chain's gradient scaled to unit norm; a zero gradient stays zero (no projection)."""
    norm = per_chain_dot(grad, grad).sqrt()
    inverse = torch.where(norm > 0, 1.0 / norm.clamp_min(torch.finfo(norm.dtype).tiny), torch.zeros_like(norm))
    return scale_per_chain(grad, inverse)


def project_out(w: Tree, anchor: Tree, direction: Tree) -> Tree:
    """Remove the component of (w − w*) along the unit ``direction`` (restrict_to_orth_grad)."""
    along = per_chain_dot(tree_map(torch.sub, w, anchor), direction)
    step_back = scale_per_chain(direction, along)
    return tree_map(torch.sub, w, step_back)


def mala_log_acceptance(
    u_old: torch.Tensor, w_old: Tree, grad_old: Tree, u_new: torch.Tensor, w_new: Tree, grad_new: Tree, epsilon: float
) -> torch.Tensor:
    """log of the Metropolis–Hastings ratio had the Langevin move w_old → w_new been a MALA proposal
    (Roberts & Tweedie 1996). With minibatch potentials this is the approximation devinterp's
    MalaAcceptanceRate uses; the caller clips it at 0 and exponentiates."""
    half = 0.5 * epsilon
    forward = per_chain_sum(tree_map(lambda wn, wo, go: (wn - wo + half * go).square(), w_new, w_old, grad_old))
    backward = per_chain_sum(tree_map(lambda wo, wn, gn: (wo - wn + half * gn).square(), w_old, w_new, grad_new))
    return (u_old - u_new) + (forward - backward) / (2 * epsilon)
