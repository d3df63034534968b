"""The Fourier basis over Z_p (REFERENCE §4; Nanda et al. 2023, arXiv 2301.05217).

The basis is orthonormal: the constant 1/√p, and for k = 1..p//2 the vectors √(2/p)·cos(2πkx/p)
and √(2/p)·sin(2πkx/p) (for even p the k = p/2 cosine is ±1/√p and its sine is zero). With it, a
mode's magnitude is ‖(C_k, S_k)‖ and the squared magnitudes add up to ‖W‖²_F.
"""

from __future__ import annotations

import math

import torch


def fourier_basis(p: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) matrices [p//2 + 1, p]; row k is frequency k (row 0: constant and zeros)."""
    x = torch.arange(p, dtype=torch.float64)
    k = torch.arange(p // 2 + 1, dtype=torch.float64).unsqueeze(1)
    angle = 2 * math.pi * k * x / p
    cos, sin = torch.cos(angle), torch.sin(angle)
    scale = torch.full((p // 2 + 1, 1), math.sqrt(2 / p), dtype=torch.float64)
    scale[0] = 1 / math.sqrt(p)
    if p % 2 == 0:
        scale[-1] = 1 / math.sqrt(p)
        sin[-1] = 0.0
    sin[0] = 0.0
    return (cos * scale).float(), (sin * scale).float()


def mode_magnitudes(matrix: torch.Tensor) -> torch.Tensor:
    """Magnitude of each frequency k = 0..p//2 in a token-indexed matrix [p, d]."""
    cos, sin = fourier_basis(matrix.shape[0])
    return ((cos @ matrix).square().sum(-1) + (sin @ matrix).square().sum(-1)).sqrt()
