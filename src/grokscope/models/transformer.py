"""One-layer transformer with an attention rate α (Zhong et al. 2023, "The Clock and the Pizza",
arXiv 2306.17844, §4): two input tokens, no LayerNorm, no causal mask, output read at the last
position. attention = α · softmax(QKᵀ/√d_head) + (1 − α) · uniform. α = 0 tends to learn Pizza,
α = 1 Clock. With ``equals_token`` the input is "a b =" and the output is read at "=" (Nanda et al.
2023, arXiv 2301.05217; REFERENCE §10); the "=" embedding is its own parameter, so ``embedding``
stays the p-row token table the analyses read.

A plain ``nn.Module``: SGLD batches it with ``torch.func.vmap`` (the generic path); on a CPU its
minibatch cross-entropy and gradient are one call into transformer_native.c instead.
"""

from __future__ import annotations

import ctypes
import math
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from .. import native
from ..seeding import generator
from ..strict import Strict
from .compiled import CompiledCrossEntropy, step_structure

# models/transformer_native.c's argument struct, and its parameters in the struct's order
TRANSFORMER_STEP = step_structure("TransformerStep", 10, (("attention_rate", ctypes.c_float),))
NATIVE_ORDER = ("embedding.weight", "pos", "equals", "W_QKV", "W_O", "W_in", "b_in", "W_out", "b_out", "unembed.weight")


class TransformerConfig(Strict):
    """One-layer transformer with attention rate α (Zhong et al. 2023; REFERENCE §1)."""

    kind: Literal["transformer"] = "transformer"
    d_model: int = Field(128, ge=1)
    n_heads: int = Field(4, ge=1)
    d_mlp: int | None = Field(None, ge=1, description="MLP width; default 4 * d_model")
    attention_rate: float = Field(1.0, ge=0.0, le=1.0, description="α: 0 = uniform attention, 1 = softmax")
    equals_token: bool = Field(False, description='inputs "a b =", read out at "=" (Nanda et al.)')

    def activation_width(self) -> int:
        """The widest activations per example besides the logits (for memory estimates): the MLP's
        hidden layer and the residual stream's four d_model-wide tensors."""
        return (self.d_mlp or 4 * self.d_model) + 4 * self.d_model

    @model_validator(mode="after")
    def _heads_divide(self) -> "TransformerConfig":
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        return self


class Transformer(nn.Module):
    def __init__(self, cfg: TransformerConfig, p: int, seed: int = 0):
        super().__init__()
        self.cfg, self.p = cfg, p
        d = cfg.d_model
        d_mlp = cfg.d_mlp or 4 * d
        g = generator(seed, "init")

        def normal(*shape: int, fan_in: int) -> nn.Parameter:
            return nn.Parameter(torch.randn(shape, generator=g) / math.sqrt(fan_in))

        self.embedding = nn.Embedding(p, d)
        self.embedding.weight = normal(p, d, fan_in=d)
        positions = 3 if cfg.equals_token else 2
        self.pos = normal(positions, d, fan_in=d)
        if cfg.equals_token:
            self.equals = normal(d, fan_in=d)  # row p of a p + 1 token vocabulary
        self.W_QKV = normal(d, 3 * d, fan_in=d)  # [W_Q | W_K | W_V], each d -> heads * d_head
        self.W_O = normal(d, d, fan_in=d)  # concatenated heads -> residual
        self.W_in, self.b_in = normal(d, d_mlp, fan_in=d), nn.Parameter(torch.zeros(d_mlp))
        self.W_out, self.b_out = normal(d_mlp, d, fan_in=d_mlp), nn.Parameter(torch.zeros(d))
        self.unembed = nn.Linear(d, p, bias=False)
        self.unembed.weight = normal(p, d, fan_in=d)

    def components(self) -> dict[str, dict[str, torch.Tensor]]:
        """Named components as element masks (REFERENCE §8): ``embed`` (token, "=" and position
        embeddings), ``head{i}`` (head i's columns of W_Q, W_K, W_V and its rows of W_O), ``attn``
        (every head), ``mlp`` and ``unembed``."""
        d, heads = self.cfg.d_model, self.cfg.n_heads
        d_head = d // heads
        params = dict(self.named_parameters())

        def whole(*names: str) -> dict[str, torch.Tensor]:
            return {n: torch.ones_like(params[n], dtype=torch.bool) for n in names}

        out = {"embed": whole("embedding.weight", "pos", *(["equals"] if self.cfg.equals_token else []))}
        for h in range(heads):
            qkv = torch.zeros(d, 3 * d, dtype=torch.bool)
            for section in range(3):  # W_Q, W_K, W_V side by side, each [d, heads * d_head]
                qkv[:, section * d + h * d_head : section * d + (h + 1) * d_head] = True
            o = torch.zeros(d, d, dtype=torch.bool)
            o[h * d_head : (h + 1) * d_head] = True  # W_O reads the concatenated heads
            out[f"head{h}"] = {"W_QKV": qkv, "W_O": o}
        out["attn"] = whole("W_QKV", "W_O")
        out["mlp"] = whole("W_in", "b_in", "W_out", "b_out")
        out["unembed"] = whole("unembed.weight")
        return out

    def compiled_loss_and_grads(self, loss: str) -> CompiledCrossEntropy | None:
        """The compiled minibatch cross-entropy and gradient, or None (another loss, no C compiler:
        the callers keep autograd through the vmapped forward)."""
        if loss != "cross_entropy":
            return None
        cfg = self.cfg
        library = native.load("models/transformer_native.c", P=self.p, D=cfg.d_model, HEADS=cfg.n_heads,
                              DM=cfg.d_mlp or 4 * cfg.d_model, EQ=int(cfg.equals_token))
        if library is None:
            return None
        names = tuple(None if name == "equals" and not cfg.equals_token else name for name in NATIVE_ORDER)
        return CompiledCrossEntropy(library, "transformer_loss_and_grads", TRANSFORMER_STEP, names, (cfg.attention_rate,))

    def unembedding_matrix(self) -> torch.Tensor:
        """Token-indexed rows of the unembedding [p, d]."""
        return self.unembed.weight

    def forward_from_embeddings(self, ea: torch.Tensor, eb: torch.Tensor, pre_unembed: bool = False) -> torch.Tensor:
        """Logits [m, p] (or the residual stream read by the unembedding) from token embeddings [m, d]."""
        m, d, heads = ea.shape[0], self.cfg.d_model, self.cfg.n_heads
        tokens = [ea, eb, self.equals.expand(m, d)] if self.cfg.equals_token else [ea, eb]
        x = torch.stack(tokens, dim=1) + self.pos  # [m, positions, d]
        q, k, v = (x @ self.W_QKV).view(m, len(tokens), 3, heads, d // heads).permute(2, 0, 3, 1, 4)  # [m, heads, positions, d_head]
        q = q[:, :, -1:]  # only the last position is read out
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // heads)  # [m, heads, 1, positions]
        alpha = self.cfg.attention_rate
        pattern = alpha * torch.softmax(scores, dim=-1) + (1 - alpha) / scores.shape[-1]
        attended = (pattern @ v).reshape(m, d) @ self.W_O
        resid = x[:, -1] + attended
        resid = resid + torch.relu(resid @ self.W_in + self.b_in) @ self.W_out + self.b_out
        return resid if pre_unembed else self.unembed(resid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        embed = self.embedding.weight
        return self.forward_from_embeddings(embed[x[:, 0]], embed[x[:, 1]])
