"""The reference MLP of the original study (REFERENCE §1).

logits(a, b) = U · act(L E[a] + R E[b])   (untied unembed U: h -> p)
             = (V act(...) + c) · Eᵀ       (tie_unembed: V: h -> d, bias c)

The forward pass is written once, over parameter sets stacked along a leading batch dimension
(:func:`batched_logits`), so that SGLD can step many chains and checkpoints in one computation; the
``nn.Module`` view is the same function with a batch of one.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from ..seeding import generator
from ..strict import Strict

ACTIVATIONS = {
    "gelu": nn.functional.gelu,
    "relu": torch.relu,
    "quad": torch.square,
}


class MLPConfig(Strict):
    """The reference MLP of the original study (REFERENCE §1)."""

    kind: Literal["mlp"] = "mlp"
    embed_dim: int = Field(12, ge=1)
    hidden_size: int = Field(48, ge=1)
    activation: Literal["gelu", "relu", "quad"] = "gelu"
    linear_1_tied: bool = False
    tie_unembed: bool = False
    scale_embed: float = Field(1.0, gt=0.0)
    scale_linear_1: float = Field(1.0, gt=0.0)
    freeze_middle: bool = False


def parameter_shapes(cfg: MLPConfig, p: int) -> dict[str, tuple[int, ...]]:
    """Names (those of the original code) and shapes of the MLP's parameters."""
    d, h = cfg.embed_dim, cfg.hidden_size
    shapes: dict[str, tuple[int, ...]] = {"embedding.weight": (p, d)}
    if not cfg.linear_1_tied:
        shapes.update({"linear1l.weight": (h, d), "linear1l.bias": (h,)})
    shapes.update({"linear1r.weight": (h, d), "linear1r.bias": (h,)})
    if cfg.tie_unembed:
        shapes.update({"linear2.weight": (d, h), "linear2.bias": (d,)})
    else:
        shapes["linear2.weight"] = (p, h)
    return shapes


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x [B, m, i], weight [B, o, i], bias [B, o] -> [B, m, o]."""
    out = torch.bmm(x, weight.transpose(1, 2))
    return out if bias is None else out + bias.unsqueeze(1)


def batched_logits(params: dict[str, torch.Tensor], x: torch.Tensor, cfg: MLPConfig) -> torch.Tensor:
    """Logits [B, m, p] for inputs x [B, m, 2] under B stacked parameter sets (leading dim B).

    Both operands are looked up in one gather, laid side by side as [E[a] | E[b]], and sent through
    the first layer as one matmul with [L | R]: L E[a] + R E[b] = [L | R] [E[a]; E[b]].
    """
    embed = params["embedding.weight"]
    n_chains, m, _ = x.shape
    tokens = x.reshape(n_chains, 2 * m, 1).expand(-1, -1, embed.shape[-1])
    pair = torch.gather(embed, 1, tokens).view(n_chains, m, 2 * embed.shape[-1])
    return logits_from_pair(params, pair, cfg)


def logits_from_pair(params: dict[str, torch.Tensor], pair: torch.Tensor, cfg: MLPConfig, pre_unembed: bool = False) -> torch.Tensor:
    """Logits [B, m, p] from embeddings laid side by side, pair = [E[a] | E[b]] [B, m, 2d];
    with ``pre_unembed`` the activations the unembedding reads instead."""
    left = "linear1r" if cfg.linear_1_tied else "linear1l"
    first = torch.cat([params[f"{left}.weight"], params["linear1r.weight"]], dim=-1)
    bias = params[f"{left}.bias"] + params["linear1r.bias"]
    hidden = ACTIVATIONS[cfg.activation](_linear(pair, first, bias))
    if cfg.tie_unembed:
        out = _linear(hidden, params["linear2.weight"], params["linear2.bias"])
        return out if pre_unembed else torch.bmm(out, params["embedding.weight"].transpose(1, 2))
    return hidden if pre_unembed else _linear(hidden, params["linear2.weight"])


class MLP(nn.Module):
    """``nn.Module`` view of the reference MLP; ``forward(x)`` takes x [m, 2] of token ids.

    Submodule names are the original code's, so ``state_dict()`` keys match its checkpoints.
    """

    def __init__(self, cfg: MLPConfig, p: int, seed: int = 0):
        super().__init__()
        self.cfg, self.p = cfg, p
        shapes = parameter_shapes(cfg, p)
        self.embedding = nn.Embedding(p, cfg.embed_dim)
        for layer in ("linear1l", "linear1r", "linear2"):
            if f"{layer}.weight" in shapes:
                out_dim, in_dim = shapes[f"{layer}.weight"]
                setattr(self, layer, nn.Linear(in_dim, out_dim, bias=f"{layer}.bias" in shapes))
        g = generator(seed, "init")
        with torch.no_grad():
            for name, param in self.named_parameters():
                param.copy_(_init(name, tuple(param.shape), cfg, g))
                frozen = name.startswith("linear1") or (cfg.tie_unembed and name.startswith("linear2"))
                param.requires_grad_(not (cfg.freeze_middle and frozen))

    def batched_logits(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return batched_logits(params, x, self.cfg)

    def components(self) -> dict[str, dict[str, torch.Tensor]]:
        """Named components as element masks (for weight-refined LLCs, REFERENCE §8): the embedding,
        the first layer (both input maps) and the output map."""
        groups = {"embedding": ("embedding.",), "layer1": ("linear1l.", "linear1r."), "output": ("linear2.",)}
        return {
            component: {n: torch.ones_like(p, dtype=torch.bool) for n, p in self.named_parameters() if n.startswith(prefixes)}
            for component, prefixes in groups.items()
        }

    def unembedding_matrix(self) -> torch.Tensor:
        """Token-indexed rows of the unembedding: linear2's weight [p, h], or E when tied."""
        return self.embedding.weight if self.cfg.tie_unembed else self.linear2.weight

    def forward_from_embeddings(self, ea: torch.Tensor, eb: torch.Tensor, pre_unembed: bool = False) -> torch.Tensor:
        """Logits [m, p] (or the activations the unembedding reads) from token embeddings [m, d]."""
        params = {k: v.unsqueeze(0) for k, v in self.named_parameters()}
        return logits_from_pair(params, torch.cat([ea, eb], dim=-1).unsqueeze(0), self.cfg, pre_unembed).squeeze(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params = {k: v.unsqueeze(0) for k, v in self.named_parameters()}
        return batched_logits(params, x.unsqueeze(0), self.cfg).squeeze(0)


def _init(name: str, shape: tuple[int, ...], cfg: MLPConfig, g: torch.Generator) -> torch.Tensor:
    """PyTorch's default initialisation (nn.Embedding: N(0, 1); nn.Linear: U(±1/sqrt(fan_in))),
    drawn from a seeded generator and scaled as the original's scale_embed / scale_linear_1."""
    if name == "embedding.weight":
        return torch.randn(shape, generator=g) * cfg.scale_embed
    fan_in = shape[-1] if name.endswith("weight") else None
    if fan_in is None:  # a bias: PyTorch bounds it by the fan-in of its weight
        fan_in = cfg.embed_dim if name.startswith("linear1") else cfg.hidden_size
    bound = 1.0 / math.sqrt(fan_in)
    tensor = (torch.rand(shape, generator=g) * 2 - 1) * bound
    return tensor * cfg.scale_linear_1 if name.startswith("linear1") else tensor
