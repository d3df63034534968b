"""Which weights a chain samples: every parameter, a regex over parameter names, named components
of a built-in model (element masks: e.g. one attention head's slices of shared matrices), or the
user's own masks. Everything outside the selection stays at w* (Wang et al. 2024's weight-refined
LLC samples one component this way; REFERENCE §8)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import nn

from ...errors import ConfigError

Masks = dict[str, torch.Tensor]


@dataclass
class Selection:
    """The sampled tensors, the masks of those sampled only in part, and a record for results."""

    names: list[str]
    masks: Masks = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)


def model_components(model: nn.Module) -> dict[str, Masks]:
    """The model's named components (name -> masks), from its ``components()`` when it has one."""
    return model.components() if hasattr(model, "components") else {}


def select(model: nn.Module, params: str | None = None, masks: Mapping[str, torch.Tensor] | None = None) -> Selection:
    """Resolve ``params`` (None: every trainable parameter; a comma list of component names; otherwise a regex over
    parameter names) or explicit ``masks`` (name -> bool tensor of the parameter's shape)."""
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    if params is not None and masks is not None:
        raise ConfigError("give params (a regex or component names) or masks, not both")
    if masks is not None:
        return _from_masks(dict(masks), shapes, "masks")
    if params is None:  # every trainable parameter: layers frozen in training (freeze_middle) stay at w*
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        frozen = [n for n in shapes if n not in trainable]
        if not trainable:
            raise ConfigError("the model has no trainable parameter to sample; name some with params")
        return Selection(trainable, {}, {"params": None, "n_sampled_elements": sum(_numel(shapes[n]) for n in trainable),
                                         "frozen_not_sampled": frozen})
    components = model_components(model)
    parts = [part.strip() for part in params.split(",")]
    if all(part in components for part in parts):
        union: Masks = {}
        for part in parts:
            for name, mask in components[part].items():
                union[name] = union[name] | mask if name in union else mask.clone()
        return _from_masks(union, shapes, parts)
    return _from_regex(params, shapes, components)


def _from_regex(pattern: str, shapes: dict[str, tuple], components: dict[str, Masks]) -> Selection:
    try:
        regex = re.compile(pattern)
    except re.error as err:
        raise ConfigError(f"params={pattern!r} is neither a component name nor a valid regular expression ({err})") from None
    chosen = [n for n in shapes if regex.search(n)]
    if not chosen:
        named = f"; its components are {list(components)}" if components else ""
        raise ConfigError(f"params={pattern!r} matches no parameter; the model has {list(shapes)}{named}")
    return Selection(chosen, {}, {"params": pattern, "n_sampled_elements": sum(_numel(shapes[n]) for n in chosen)})


def _from_masks(masks: Masks, shapes: dict[str, tuple], source: list[str] | str) -> Selection:
    unknown = sorted(set(masks) - set(shapes))
    if unknown:
        raise ConfigError(f"masks name {unknown}, which the model does not have; it has {list(shapes)}")
    for name, mask in masks.items():
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise ConfigError(f"mask of {name} must be a bool tensor, got {getattr(mask, 'dtype', type(mask).__name__)}")
        if tuple(mask.shape) != shapes[name]:
            raise ConfigError(f"mask of {name} has shape {tuple(mask.shape)}, the parameter has {shapes[name]}")
    counts = {n: int(m.sum()) for n, m in masks.items()}
    if not any(counts.values()):
        raise ConfigError("the masks select no entry: every mask is all False")
    names = [n for n in shapes if counts.get(n)]
    partial = {n: masks[n] for n in names if counts[n] < _numel(shapes[n])}
    record = {"params": source if isinstance(source, str) else ",".join(source), "components": None if isinstance(source, str) else source,
              "n_sampled_elements": sum(counts[n] for n in names), "masked_elements": {n: counts[n] for n in partial}}
    return Selection(names, partial, record)


def _numel(shape: tuple) -> int:
    return int(torch.Size(shape).numel())
