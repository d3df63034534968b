"""The model zoo. Every model maps token pairs x [m, 2] to logits [m, p] and exposes
``embedding`` (token embeddings), ``unembedding_matrix()`` and ``forward_from_embeddings(ea, eb)``
for the analyses; the MLP also has a hand-batched ``batched_logits`` for fast SGLD and training."""

from typing import Callable

import torch
from torch import nn

from .mlp import MLP, MLPConfig
from .sequential import sequential_stack
from .transformer import Transformer, TransformerConfig

# kind -> (its config class, its module). Adding a model is one module (config + nn.Module) plus one
# line here: the run config's model union, `--set` keys and error messages are derived from it.
MODELS: dict[str, tuple[type, type[nn.Module]]] = {
    "mlp": (MLPConfig, MLP),
    "transformer": (TransformerConfig, Transformer),
}


def build_model(cfg, p: int, seed: int = 0) -> nn.Module:
    """A freshly initialised model of ``cfg.kind``, seeded by ``seed``."""
    return MODELS[cfg.kind][1](cfg, p, seed)


BatchedForward = Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]


def batched_forward(model: nn.Module) -> BatchedForward:
    """``forward(params, x)``: outputs [B, m, ...] of ``model`` under B parameter sets stacked along
    a leading dimension (params name -> [B, ...]) on inputs x [B, m, ...]. The model's own
    ``batched_logits`` when it has one, batched matrix products for a plain ``nn.Sequential`` stack
    (sequential.py); otherwise ``torch.func.vmap`` over ``functional_call``."""
    if hasattr(model, "batched_logits"):
        return model.batched_logits
    if (stack := sequential_stack(model)) is not None:
        return stack.batched_logits

    def single(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(model, params, (x,))

    return torch.func.vmap(single)


__all__ = ["MLP", "MODELS", "MLPConfig", "Transformer", "TransformerConfig", "batched_forward", "build_model", "sequential_stack"]
