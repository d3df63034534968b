"""The reference MLP of the original study (REFERENCE §1).

logits(a, b) = U · act(L E[a] + R E[b])   (untied unembed U: h -> p)
             = (V act(...) + c) · Eᵀ       (tie_unembed: V: h -> d, bias c)

The forward pass is written once, over parameter sets stacked along a leading batch dimension
(:func:`batched_logits`), so that SGLD can step many chains and checkpoints in one computation; the
``nn.Module`` view is the same function with a batch of one. :func:`batched_logits_and_vjp` is the
same forward with its backward pass written out (a few batched matmuls and one scatter-add), so the
SGLD loop runs without autograd; on a CPU, :class:`CompiledMlpLoss` computes the same loss and
gradient in one call into mlp_native.c.
"""

from __future__ import annotations

import ctypes
import functools
import math
from typing import Callable, Literal

import torch
from pydantic import Field
from torch import nn

from .. import native
from .compiled import CompiledCrossEntropy, step_structure
from ..seeding import generator
from ..strict import Strict

ACTIVATIONS = {
    "gelu": nn.functional.gelu,
    "relu": torch.relu,
    "quad": torch.square,
}

# name -> the ACT code of mlp_native.c
NATIVE_ACTIVATION_CODES = {"gelu": 0, "relu": 1, "quad": 2}

# name -> (d act / d pre) ⊙ upstream, given (upstream, pre)
ACTIVATION_VJPS = {
    "gelu": lambda grad, pre: torch.ops.aten.gelu_backward(grad, pre),
    "relu": lambda grad, pre: torch.ops.aten.threshold_backward(grad, pre, 0.0),
    "quad": lambda grad, pre: grad * pre * 2.0,
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

    def activation_width(self) -> int:
        """The widest activation per example besides the logits (for memory estimates)."""
        return self.hidden_size


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


@functools.lru_cache(maxsize=64)
def _chain_offsets(n_chains: int, p: int, device: torch.device) -> torch.Tensor:
    """[B, 1, 1]: the first row of each chain's embedding in the flattened [B·p, d] table."""
    return torch.arange(n_chains, device=device).view(-1, 1, 1) * p


def batched_logits_and_vjp(
    params: dict[str, torch.Tensor], x: torch.Tensor, cfg: MLPConfig
) -> tuple[torch.Tensor, Callable[[torch.Tensor], dict[str, torch.Tensor]]]:
    """Logits [B, m, p] as :func:`batched_logits` (equal up to float rounding), and the map from
    d loss / d logits [B, m, p] to d loss / d params (every name in ``params``): the backward pass
    in closed form, without autograd. Rows are looked up with ``index_select`` on the flattened
    [B·p, d] embedding, and the embedding gradient is one ``scatter_add``."""
    embed = params["embedding.weight"]
    n_chains, m, _ = x.shape
    p, d = embed.shape[1], embed.shape[2]
    rows = (x + _chain_offsets(n_chains, p, x.device)).view(-1)
    pair = embed.reshape(n_chains * p, d).index_select(0, rows).view(n_chains, m, 2 * d)
    left = "linear1r" if cfg.linear_1_tied else "linear1l"
    first = torch.cat([params[f"{left}.weight"], params["linear1r.weight"]], dim=-1)  # [B, h, 2d]
    bias = params[f"{left}.bias"] + params["linear1r.bias"]
    pre = torch.baddbmm(bias.unsqueeze(1), pair, first.transpose(1, 2))
    hidden = ACTIVATIONS[cfg.activation](pre)
    if cfg.tie_unembed:
        out = torch.baddbmm(params["linear2.bias"].unsqueeze(1), hidden, params["linear2.weight"].transpose(1, 2))
        logits = torch.bmm(out, embed.transpose(1, 2))
    else:
        logits = torch.bmm(hidden, params["linear2.weight"].transpose(1, 2))

    def vjp(grad: torch.Tensor) -> dict[str, torch.Tensor]:
        grads: dict[str, torch.Tensor] = {}
        if cfg.tie_unembed:
            grad_out = torch.bmm(grad, embed)  # [B, m, d]
            unembed_grad = torch.bmm(grad.transpose(1, 2), out)  # [B, p, d]
            grads["linear2.weight"] = torch.bmm(grad_out.transpose(1, 2), hidden)
            grads["linear2.bias"] = grad_out.sum(1)
            grad_hidden = torch.bmm(grad_out, params["linear2.weight"])
        else:
            grads["linear2.weight"] = torch.bmm(grad.transpose(1, 2), hidden)
            grad_hidden = torch.bmm(grad, params["linear2.weight"])
        grad_pre = ACTIVATION_VJPS[cfg.activation](grad_hidden, pre)
        grad_first = torch.bmm(grad_pre.transpose(1, 2), pair)  # [B, h, 2d]
        grad_bias = grad_pre.sum(1)
        if cfg.linear_1_tied:  # both halves (and both bias terms) are linear1r's
            grads["linear1r.weight"] = grad_first[..., :d] + grad_first[..., d:]
            grads["linear1r.bias"] = grad_bias * 2.0
        else:
            grads["linear1l.weight"] = grad_first[..., :d].contiguous()
            grads["linear1r.weight"] = grad_first[..., d:].contiguous()
            grads["linear1l.bias"], grads["linear1r.bias"] = grad_bias, grad_bias.clone()
        grad_pair = torch.bmm(grad_pre, first).view(n_chains, 2 * m, d)
        tokens = x.reshape(n_chains, 2 * m, 1).expand(-1, -1, d)
        embed_grad = unembed_grad if cfg.tie_unembed else torch.zeros_like(embed)
        grads["embedding.weight"] = embed_grad.scatter_add_(1, tokens, grad_pair)
        return grads

    return logits, vjp


MLP_STEP = step_structure("MlpStep", 6)  # models/mlp_native.c's argument struct


class CompiledMlpLoss(CompiledCrossEntropy):
    """models/mlp_native.c for the untied unembedding; with tied input maps (both are linear1r) the
    kernel sees linear1r twice and its gradient is the sum of the two halves'."""

    def __init__(self, library: ctypes.CDLL, cfg: MLPConfig):
        self.tied = cfg.linear_1_tied
        left = "linear1r" if self.tied else "linear1l"
        names = ("embedding.weight", f"{left}.weight", f"{left}.bias", "linear1r.weight", "linear1r.bias", "linear2.weight")
        super().__init__(library, "mlp_loss_and_grads", MLP_STEP, names)

    def __call__(self, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if not self.tied:
            return super().__call__(params, x, y)
        loss, (embed, left_w, left_b, right_w, right_b, out) = self.in_order(params, x, y)
        return loss, {"embedding.weight": embed, "linear1r.weight": left_w.add_(right_w), "linear1r.bias": left_b.mul_(2.0), "linear2.weight": out}


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

    # ∂Q/∂E_a and ∂Q/∂E_b differ only by the first-layer map each passes through: identical with
    # tied maps (symmetricity 1 at initialisation), near 0 with untied ones (docs/circuits.md)
    symmetricity_is_evidence = False

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

    def batched_logits_and_vjp(self, params: dict[str, torch.Tensor], x: torch.Tensor):
        return batched_logits_and_vjp(params, x, self.cfg)

    def compiled_loss_and_grads(self, loss: str) -> CompiledMlpLoss | None:
        """The compiled minibatch loss and gradient for ``loss``, or None where there is none (a tied
        unembedding, another loss, no C compiler: the callers keep :func:`batched_logits_and_vjp`)."""
        if loss != "cross_entropy" or self.cfg.tie_unembed:
            return None
        library = native.load("models/mlp_native.c", P=self.p, D=self.cfg.embed_dim, H=self.cfg.hidden_size,
                              ACT=NATIVE_ACTIVATION_CODES[self.cfg.activation])
        return None if library is None else CompiledMlpLoss(library, self.cfg)

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
