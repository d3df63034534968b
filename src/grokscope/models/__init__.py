"""The model zoo. Every model maps token pairs x [m, 2] to logits [m, p] and exposes
``embedding`` (token embeddings), ``unembedding_matrix()`` and ``forward_from_embeddings(ea, eb)``
for the analyses; the MLP also has a hand-batched ``batched_logits`` for fast SGLD."""

from torch import nn

from ..config import MLPConfig, TransformerConfig
from .mlp import MLP
from .transformer import Transformer


def build_model(cfg: MLPConfig | TransformerConfig, p: int, seed: int = 0) -> nn.Module:
    """A freshly initialised model, seeded by ``seed``."""
    return (MLP if cfg.kind == "mlp" else Transformer)(cfg, p, seed)


__all__ = ["MLP", "Transformer", "build_model"]
