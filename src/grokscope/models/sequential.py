"""A hand-batched forward pass, with its backward written out, for any model that is a plain stack:
an ``nn.Linear``, or an ``nn.Sequential`` of ``nn.Linear`` layers and elementwise activations (ReLU,
Tanh, exact GELU, Identity). Such a model needs no ``torch.func.vmap`` and no autograd in the
sampler: its B stacked parameter sets run as batched matrix products (``bmm``), and the gradient of
each chain's loss is the textbook backward pass of the same products. Deep linear networks and the
small MLPs users build from ``nn.Sequential`` take this path; any other module keeps the generic one.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

Tree = dict[str, torch.Tensor]

# activation -> (forward, backward(grad of the output, pre-activation, output))
ACTIVATIONS: dict[type, tuple[Callable, Callable]] = {
    nn.Identity: (lambda pre: pre, lambda grad, pre, out: grad),
    nn.ReLU: (torch.relu, lambda grad, pre, out: torch.ops.aten.threshold_backward(grad, pre, 0.0)),
    nn.Tanh: (torch.tanh, lambda grad, pre, out: grad * (1 - out * out)),
    nn.GELU: (torch.nn.functional.gelu, lambda grad, pre, out: torch.ops.aten.gelu_backward(grad, pre)),
}


def _layers(model: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """The model's layers with their parameter-name prefixes, or None when it is not a plain stack."""
    if type(model).forward is nn.Linear.forward:
        return [("", model)]
    if not isinstance(model, nn.Sequential) or type(model).forward is not nn.Sequential.forward:
        return None  # a subclass that computes something else
    layers = [(f"{name}.", module) for name, module in model.named_children()]
    for _, module in layers:
        if isinstance(module, nn.GELU) and module.approximate != "none":
            return None
        if type(module).forward is not nn.Linear.forward and type(module) not in ACTIVATIONS:
            return None
    return layers


class SequentialStack:
    """``batched_logits(params, x)`` and ``batched_logits_and_vjp(params, x)`` for a plain stack;
    params: name -> [B, ...], x: [B, m, in]."""

    def __init__(self, layers: list[tuple[str, nn.Module]]):
        self.layers = layers

    def batched_logits(self, params: Tree, x: torch.Tensor) -> torch.Tensor:
        return self.batched_logits_and_vjp(params, x)[0]

    def batched_logits_and_vjp(self, params: Tree, x: torch.Tensor) -> tuple[torch.Tensor, Callable[[torch.Tensor], Tree]]:
        inputs = []  # each layer's input
        out = x
        for prefix, module in self.layers:
            inputs.append(out)
            if isinstance(module, nn.Linear):  # _layers let only nn.Linear's own forward through
                weight = params[f"{prefix}weight"].transpose(1, 2)
                bias = params.get(f"{prefix}bias")
                out = torch.bmm(out, weight) if bias is None else torch.baddbmm(bias.unsqueeze(1), out, weight)
            else:
                out = ACTIVATIONS[type(module)][0](out)
        outputs = out

        def vjp(grad: torch.Tensor) -> Tree:
            grads: Tree = {}
            activation_outputs = inputs[1:] + [outputs]
            for index in reversed(range(len(self.layers))):
                prefix, module = self.layers[index]
                if isinstance(module, nn.Linear):
                    grads[f"{prefix}weight"] = torch.bmm(grad.transpose(1, 2), inputs[index])
                    if f"{prefix}bias" in params:
                        grads[f"{prefix}bias"] = grad.sum(1)
                    if index:
                        grad = torch.bmm(grad, params[f"{prefix}weight"])
                else:
                    grad = ACTIVATIONS[type(module)][1](grad, inputs[index], activation_outputs[index])
            return grads

        return outputs, vjp


def sequential_stack(model: nn.Module) -> SequentialStack | None:
    """The hand-batched passes of ``model`` when it is a plain stack, else None."""
    layers = _layers(model)
    return None if layers is None else SequentialStack(layers)
