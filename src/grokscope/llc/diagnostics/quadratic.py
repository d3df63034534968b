"""The quadratic floor of λ̂: what the Hessian of L_n at w* alone gives.

Near a minimum w*, the splitting lemma (Arnold, Gusein-Zade & Varchenko 1985, §11) writes
L_n − L_n(w*) as ½ of a sum of squares over the rank(H) directions where the Hessian H is nonzero,
plus a function g of the remaining directions alone, so λ = rank(H)/2 + λ(g) ≥ rank(H)/2.
Under the localised posterior exp(−nβ L_n(w) − γ/2 ‖w − w*‖²), an eigenvector of H with eigenvalue h
is a Gaussian of precision nβh + γ, adding ½·nβh/(nβh + γ) to nβ(E[L_n] − L_n(w*)); their sum

    Q = Σ_h ½·nβh/(nβh + γ)

is λ̂ of the quadratic part at this nβ and γ. λ̂ well below Q means chains that have not yet relaxed
H's slowest modes (relaxation time 2/(nβh + γ) in units of ε × steps). λ̂ at Q says the chains
show nothing of g: right where g adds nothing (the minima form a smooth manifold there), and a
plateau below λ where its directions have not been explored yet (docs/validation.md, "The
quadratic floor").
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ...thresholds import QUADRATIC_FLOOR_MAX_PARAMS
from ..config import SGLDConfig


JACOBIAN_ENTRIES = 2**23  # float64 entries of one chunk's Jacobian (64 MiB): examples × outputs × P
# The Gauss-Newton matrix is an average over examples: at most this many, evenly spaced, estimate it
# (on a deep linear network of the validation, Q from 2048 of its 100,000 examples is within 0.1%)
GAUSS_NEWTON_EXAMPLES = 4096


def curvature(model: nn.Module, params: dict[str, torch.Tensor], names: list[str], x: torch.Tensor, y: torch.Tensor,
              loss) -> tuple[np.ndarray, np.ndarray] | None:
    """The eigenvalues and eigenvectors (columns) of :func:`gauss_newton`; None for a custom loss."""
    matrix = gauss_newton(model, params, names, x, y, loss)
    if matrix is None:
        return None
    values, vectors = torch.linalg.eigh(matrix)
    return values.numpy(), vectors.numpy()


def gauss_newton(model: nn.Module, params: dict[str, torch.Tensor], names: list[str], x: torch.Tensor, y: torch.Tensor,
                 loss) -> torch.Tensor | None:
    """The Gauss-Newton matrix Σ_i Jᵢᵀ ∇²ℓᵢ Jᵢ / n of a built-in loss (over at most
    GAUSS_NEWTON_EXAMPLES of the examples, evenly spaced) w.r.t. the
    parameters ``names`` at ``params`` (Jᵢ: the outputs' Jacobian on example i; the parameters in
    the order of ``names``, each flattened), in float64; None for a custom loss. At a minimum that
    fits the data it is the Hessian; unlike the Hessian it takes no curvature from residuals, which
    float32 targets leave on exact fits and which would lift H's null directions into small modes
    (Martens 2020, arXiv 1412.1193, §8)."""
    if loss not in ("mse", "cross_entropy"):
        return None
    model = copy.deepcopy(model).cpu().double()  # buffers in float64 too; the caller's model is untouched
    params = {n: t.detach().cpu().double() for n, t in params.items()}
    fixed = {n: t for n, t in params.items() if n not in names}
    shapes = [params[n].shape for n in names]
    sizes = [params[n].numel() for n in names]
    flat = torch.cat([params[n].flatten() for n in names])

    def outputs(vector: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        tree = {n: part.view(s) for n, part, s in zip(names, vector.split(sizes), shapes)}
        return torch.func.functional_call(model, {**fixed, **tree}, (xb,))

    stride = -(-x.shape[0] // GAUSS_NEWTON_EXAMPLES)
    x = x[::stride]
    n, size = x.shape[0], flat.numel()
    x = x.double() if x.is_floating_point() else x
    with torch.no_grad():
        per_row = outputs(flat, x[:1]).numel()
    chunk = max(1, JACOBIAN_ENTRIES // (per_row * size))
    total = torch.zeros(size, size, dtype=torch.float64)
    for start in range(0, n, chunk):
        xb = x[start:start + chunk]
        jacobian = torch.func.jacfwd(outputs)(flat, xb)  # [m, *output, P]: P tangents, fewer than the outputs
        if loss == "mse":  # ℓ = mean over an example's elements of the squared error: ∇²ℓ = 2/elements
            rows = jacobian.reshape(-1, size)
            total += rows.T @ rows * (2 / per_row / n)
        else:  # ℓ = −log softmax: ∇²ℓ = diag(p) − ppᵀ over the classes (the last output axis)
            per_class = jacobian.reshape(-1, jacobian.shape[-2], size)  # [m·positions, C, P]
            p = torch.softmax(outputs(flat, xb).detach().flatten(0, -2), dim=-1).unsqueeze(-1)  # [m·positions, C, 1]
            weighted = p * per_class
            positions = per_class.shape[0] / xb.shape[0]
            total += (torch.einsum("kcp,kcq->pq", weighted, per_class)
                      - torch.einsum("kp,kq->pq", weighted.sum(1), weighted.sum(1))) / (n * positions)
    return (total + total.T) / 2


def quadratic_floor(eigenvalues: np.ndarray, nbeta: float, gamma: float) -> float | None:
    """Q = Σ ½·nβh/(nβh + γ) over the Hessian's eigenvalues h (negative ones, numerical noise or
    a saddle that the draws-below check reports, count as 0); None without a localisation (γ = 0),
    where every mode however flat would count ½ and rounding noise cannot be told from a mode."""
    if gamma <= 0:
        return None
    stiffness = nbeta * np.clip(eigenvalues, 0.0, None)
    return float(np.sum(0.5 * stiffness / (stiffness + gamma)))


@dataclass(frozen=True)
class SetFloor:
    """One parameter set's floor Q and the spectrum it came from (H = V diag(h) Vᵀ)."""

    floor: float
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray


def set_floors(model: nn.Module, param_sets: list, finite: list[bool], names: list[str], partly_sampled: bool,
               cfg: SGLDConfig, set_configs: list[SGLDConfig], nbetas: list[float], x: torch.Tensor, y: torch.Tensor,
               sizes: list[int], shared_data: bool, loss) -> list[SetFloor | None]:
    """Each parameter set's quadratic floor at its nβ and γ, on its data ([K, n_max, ...] stacked, set
    k using its first sizes[k] rows), or None where it is switched off or does not apply: a model
    above QUADRATIC_FLOOR_MAX_PARAMS sampled parameters, tensors sampled only in part, a projected
    gradient, a custom loss, non-finite weights, weight decay (another prior) or no localisation.
    Sets with the same weights and data (a grid of step sizes at one w*) share one spectrum."""
    n_params = sum(model.get_parameter(n).numel() for n in names)
    if (not cfg.quadratic_floor or n_params > QUADRATIC_FLOOR_MAX_PARAMS or partly_sampled or cfg.restrict_to_orth_grad
            or not isinstance(loss, str)):
        return [None] * len(param_sets)
    shared = (x[0, : sizes[0]].cpu(), y[0, : sizes[0]].cpu())
    known: list[tuple[dict, torch.Tensor, tuple[np.ndarray, np.ndarray] | None]] = []
    floors: list[SetFloor | None] = []
    for k, params in enumerate(param_sets):
        own = set_configs[k]
        if not finite[k] or own.weight_decay != 0 or own.gamma <= 0:
            floors.append(None)
            continue
        xk, yk = shared if shared_data else (x[k, : sizes[k]].cpu(), y[k, : sizes[k]].cpu())
        match = next((m for m in known if m[1] is xk and all(torch.equal(m[0][n], params[n]) for n in names)), None)
        if match is None:
            match = (params, xk, curvature(model, params, names, xk, yk, loss))
            known.append(match)
        spectrum = match[2]
        floors.append(None if spectrum is None else SetFloor(quadratic_floor(spectrum[0], nbetas[k], own.gamma), *spectrum))
    return floors
