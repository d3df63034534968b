"""The model zoo. Every model maps token pairs x [m, 2] to logits [m, p] and exposes
``embedding`` (token embeddings), ``unembedding_matrix()`` and ``forward_from_embeddings(ea, eb)``
for the analyses; the MLP also has a hand-batched ``batched_logits`` for fast SGLD and training."""

from typing import Callable

import torch
from torch import nn

from ..config import MLPConfig, TransformerConfig
from .mlp import MLP
from .transformer import Transformer


def build_model(cfg: MLPConfig | TransformerConfig, p: int, seed: int = 0) -> nn.Module:
    """A freshly initialised model, seeded by ``seed``."""
    return (MLP if cfg.kind == "mlp" else Transformer)(cfg, p, seed)


BatchedForward = Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]


def batched_forward(model: nn.Module) -> BatchedForward:
    """``forward(params, x)``: outputs [B, m, ...] of ``model`` under B parameter sets stacked along
    a leading dimension (params name -> [B, ...]) on inputs x [B, m, ...]. The model's own
    ``batched_logits`` when it has one; otherwise ``torch.func.vmap`` over ``functional_call``."""
    if hasattr(model, "batched_logits"):
        return model.batched_logits

    def single(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(model, params, (x,))

    return torch.func.vmap(single)


__all__ = ["MLP", "Transformer", "batched_forward", "build_model"]
