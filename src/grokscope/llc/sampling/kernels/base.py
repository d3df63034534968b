"""What every sampler kernel shares: per-chain settings, the state, and the terms of one step.

A kernel is a pure pair over an explicit state of [B, ...] tensors (blackjax's
``SamplingAlgorithm(init, step)``, optax's ``GradientTransformation(init, update)``):

    state = kernel.init(anchors, settings)          # anchors: name -> [B, ...] (w* of each chain)
    state = kernel.step(state, loss_grad, noise)    # loss_grad, noise: name -> [B, ...]

``kernel.terms(state, loss_grad)`` splits the move the next step would make into its drift terms
and its noise scale, so observers (MALA acceptance, step norms) work for every kernel:

    w' = w − gradient − localisation − weight_decay + noise_scale ⊙ ξ
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Protocol, Sequence

import torch

from ....errors import ConfigError
from ....strict import Strict
from ..tree import Tree, leaves

SETTING_NAMES = ("epsilon", "gamma", "nbeta", "weight_decay")


@dataclass(frozen=True)
class ChainSettings:
    """ε, γ, nβ and weight decay of each chain: [B] float64 tensors (a scalar broadcasts)."""

    epsilon: torch.Tensor
    gamma: torch.Tensor
    nbeta: torch.Tensor
    weight_decay: torch.Tensor
    _shaped: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def broadcast(cls, n_chains: int, device: torch.device | str = "cpu", **values: float | Sequence[float]) -> "ChainSettings":
        """Settings for ``n_chains`` chains; each value is a number or one number per chain."""
        missing = sorted(set(SETTING_NAMES) - set(values))
        if missing:
            raise ConfigError(f"chain settings lack {missing}")
        tensors = {}
        for name in SETTING_NAMES:
            value = torch.as_tensor(values[name], dtype=torch.float64, device=device)
            if value.dim() == 0:
                value = value.expand(n_chains)
            if value.shape != (n_chains,):
                raise ConfigError(f"{name}: {value.numel()} values for {n_chains} chains (give one per chain, or one number)")
            tensors[name] = value.contiguous()
        return cls(**tensors)

    def per_element(self, name: str, like: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Setting ``name`` shaped [B, 1, ..., 1] to broadcast against a [B, ...] tensor (made once per
        shape and dtype: observers ask for it at every measured step)."""
        key = (name, like.dim(), dtype)
        if key not in self._shaped:
            self._shaped[key] = getattr(self, name).to(dtype).view(-1, *([1] * (like.dim() - 1)))
        return self._shaped[key]

    def take(self, rows: Sequence[int]) -> "ChainSettings":
        """The settings of chains ``rows`` alone."""
        return ChainSettings(**{name: getattr(self, name)[list(rows)] for name in SETTING_NAMES})


@dataclass(frozen=True)
class KernelState:
    """The position w of every chain, its anchor w* and its settings. Kernels extend it."""

    w: Tree
    anchor: Tree
    settings: ChainSettings

    def take(self, rows: Sequence[int]) -> "KernelState":
        """The state of chains ``rows`` alone (every tree of a kernel's state, and the settings)."""
        index = list(rows)
        parts = {}
        for part in fields(self):
            value = getattr(self, part.name)
            parts[part.name] = value.take(index) if isinstance(value, ChainSettings) else {n: t[index] for n, t in value.items()}
        return type(self)(**parts)


@dataclass(frozen=True)
class StepTerms:
    """The move of one step, w' = w − (gradient + localisation + weight_decay) + noise_scale ⊙ ξ.
    Trees of [B, ...] tensors; ``noise_scale`` broadcasts against them."""

    gradient: Tree
    localisation: Tree
    weight_decay: Tree
    noise_scale: Tree

    def drift(self) -> Tree:
        names = list(self.gradient)
        out = torch._foreach_add(leaves(self.gradient, names), leaves(self.localisation, names))
        torch._foreach_add_(out, leaves(self.weight_decay, names))
        return dict(zip(names, out))


class KernelOptions(Strict):
    """A kernel's own settings (none for SGLD). Field names are flat and carry the kernel's prefix
    (``rmsprop_alpha``), so one name serves in Python (``estimate_llc(rmsprop_alpha=0.9)``), on the
    command line (``--rmsprop-alpha``, derived from the field's type, default and description) and in
    llc.json."""


class Kernel(Protocol):
    """A sampler: ``init``, ``step`` and ``terms`` as described in this module's docstring."""

    def init(self, anchors: Tree, settings: ChainSettings) -> KernelState: ...

    def step(self, state: KernelState, loss_grad: Tree, noise: Tree) -> KernelState: ...

    def terms(self, state: KernelState, loss_grad: Tree) -> StepTerms: ...
