"""The model zoo. Every model exposes ``batched_logits(params, x)`` over stacked parameter sets."""

from .mlp import MLP, build_model

__all__ = ["MLP", "build_model"]
