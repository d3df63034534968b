"""Top eigenvalues of the training-loss Hessian at a checkpoint, from Hessian-vector products
(Lanczos with full reorthogonalisation; Golub & Van Loan §10.1). The weights analysed are the
checkpoint's own (the original script never loaded them, REFERENCE §6)."""

from __future__ import annotations

import torch
from torch import nn

from ..seeding import generator


def top_hessian_eigenvalues(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, count: int = 5, iterations: int = 24, seed: int = 0
) -> list[float]:
    """The ``count`` largest eigenvalues of ∇²L_n at the model's current weights, descending."""
    params = [p for p in model.parameters() if p.requires_grad]
    loss = nn.functional.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    flat_grad = torch.cat([g.reshape(-1) for g in grads])
    size = flat_grad.numel()

    def hvp(vector: torch.Tensor) -> torch.Tensor:
        parts = torch.autograd.grad(flat_grad, params, grad_outputs=vector, retain_graph=True)
        return torch.cat([part.reshape(-1) for part in parts]).detach()

    steps = min(iterations, size)
    basis = torch.zeros(steps + 1, size, dtype=torch.float64)
    alphas, betas = torch.zeros(steps, dtype=torch.float64), torch.zeros(steps, dtype=torch.float64)
    start = torch.randn(size, generator=generator(seed, "lanczos"), dtype=torch.float64)
    basis[0] = start / start.norm()
    used = steps
    for j in range(steps):
        w = hvp(basis[j].float()).double()
        alphas[j] = w @ basis[j]
        w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)  # full reorthogonalisation
        w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)
        betas[j] = w.norm()
        if betas[j] < 1e-10:
            used = j + 1
            break
        basis[j + 1] = w / betas[j]
    tridiagonal = torch.diag(alphas[:used]) + torch.diag(betas[: used - 1], 1) + torch.diag(betas[: used - 1], -1)
    values = torch.linalg.eigvalsh(tridiagonal).flip(0)
    return [float(v) for v in values[:count]]
