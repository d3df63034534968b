"""The per-chain loss of a model under many stacked parameter sets, and its gradient.

Built-in models provide ``batched_logits(params, x)`` (a hand-batched forward, fastest), and a plain
``nn.Sequential`` stack gets one with its backward (models/sequential.py); any other ``nn.Module``
is batched with ``torch.func.vmap`` over ``functional_call``. Built-in losses give the
gradient w.r.t. the outputs in closed form, so autograd only runs through the model, and not at
all for a model that also writes out its backward pass (``batched_logits_and_vjp``, the MLP's).
On a CPU a model may go further and compute loss and gradient in one compiled call
(``compiled_loss_and_grads(loss)``, the MLP's: models/mlp_native.c).
"""

from __future__ import annotations

import copy
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from ...errors import CheckpointError, ConfigError
from ...models import batched_forward, sequential_stack
from .tree import Tree

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class CrossEntropy:
    """Mean cross-entropy per chain: outputs [B, m, C], integer targets [B, m] -> [B]."""

    def value(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.per_sample(outputs, targets).mean(-1)

    def per_sample(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """[B, m]: each example's cross-entropy."""
        log_probs = torch.log_softmax(outputs, dim=-1)
        return -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)

    def constant_loss(self, targets: torch.Tensor) -> float:
        """The loss of the best constant prediction on integer ``targets``: the entropy of their frequencies."""
        p = torch.bincount(targets.flatten().long()).double()
        p = p[p > 0] / p.sum()
        return float(-(p * p.log()).sum())

    def value_and_output_grad(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and d loss / d outputs = (softmax − onehot) / m."""
        log_probs = torch.log_softmax(outputs, dim=-1)
        index = targets.unsqueeze(-1)
        loss = -log_probs.gather(-1, index).squeeze(-1).mean(-1)
        grad = log_probs.exp_()
        grad.scatter_add_(-1, index, torch.full_like(index, -1.0, dtype=grad.dtype))
        return loss, grad.mul_(1.0 / outputs.shape[1])


class MeanSquaredError:
    """Mean squared error per chain over every non-batch element (torch's mse_loss, per chain)."""

    def value(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (outputs - targets).square().flatten(1).mean(-1)

    def per_sample(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """[B, m]: each example's squared error, averaged over its own elements."""
        return (outputs - targets).square().flatten(2).mean(-1)

    def constant_loss(self, targets: torch.Tensor) -> float:
        """The loss of the best constant prediction (each element's mean over the examples)."""
        targets = targets.double()
        return float((targets - targets.mean(0)).square().mean())

    def value_and_output_grad(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        diff = outputs - targets
        per_chain = diff[0].numel()
        flat = diff.flatten(1)  # one reduction, no squared copy: small models pay per operation
        return torch.linalg.vecdot(flat, flat).div_(per_chain), diff.mul_(2.0 / per_chain)


class CustomLoss:
    """A user's ``loss(outputs, targets) -> scalar``, vmapped over chains."""

    def __init__(self, fn: LossFn):
        self.value = torch.func.vmap(fn)
        self.per_sample = torch.func.vmap(torch.func.vmap(lambda o, t: fn(o.unsqueeze(0), t.unsqueeze(0))))


BUILTIN_LOSSES = {"cross_entropy": CrossEntropy, "mse": MeanSquaredError}


def resolve_loss(loss: str | LossFn):
    if isinstance(loss, str):
        if loss not in BUILTIN_LOSSES:
            raise ConfigError(f"loss={loss!r}: allowed are {sorted(BUILTIN_LOSSES)} or a callable")
        return BUILTIN_LOSSES[loss]()
    return CustomLoss(loss)


class BatchedObjective:
    """Per-chain losses of ``model`` and their gradients w.r.t. the sampled parameters."""

    def __init__(self, model: nn.Module, loss: str | LossFn):
        self.model, self.loss_fn = model, loss
        self.loss = resolve_loss(loss)
        self.closed_form = hasattr(self.loss, "value_and_output_grad")
        self.forward = batched_forward(model)
        stack = sequential_stack(model)
        own = getattr(model, "batched_logits_and_vjp", None) or (stack.batched_logits_and_vjp if stack else None)
        self.forward_and_vjp = own if self.closed_form else None
        self.pure = hasattr(model, "batched_logits") or stack is not None  # no module state swapped while it runs
        compile_for = getattr(model, "compiled_loss_and_grads", None)
        self.compiled = compile_for(loss) if compile_for is not None and isinstance(loss, str) else None

    def replica(self) -> "BatchedObjective":
        """An objective safe to use beside this one in another thread: this one when the model's
        batched forward is a pure function; else one over a copy of the model
        (``functional_call`` swaps the module's parameters while it runs)."""
        if self.pure:
            return self
        return BatchedObjective(copy.deepcopy(self.model), self.loss_fn)

    def losses(self, sampled: Tree, fixed: Tree, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-chain loss [B]; every tree holds [B, ...] tensors. Through the compiled step where the
        model has one: with its gradient (dropped) it is still an order of magnitude faster than the
        torch forward (docs/benchmarks.md)."""
        params = {**fixed, **sampled}
        if self.compiled is not None and self.compiled.accepts(params, x, y):
            return self.compiled(params, x, y)[0]
        return self.loss.value(self.forward(params, x), y)

    def per_sample_losses(self, sampled: Tree, fixed: Tree, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each chain's loss on each example [B, n] of a data set x [n, ...], y [n, ...] shared by all chains."""
        chains = next(iter(sampled.values())).shape[0]
        outputs = self.forward({**fixed, **sampled}, x.expand(chains, *x.shape))
        return self.loss.per_sample(outputs, y.expand(chains, *y.shape))

    def losses_and_grads(self, sampled: Tree, fixed: Tree, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, Tree]:
        """Per-chain minibatch loss [B] and its gradient tree (zero for a parameter the outputs do not
        read); chains do not interact."""
        params = {**fixed, **sampled}
        if self.compiled is not None and self.compiled.accepts(params, x, y):
            loss, grads = self.compiled(params, x, y)
            return loss, {name: grads[name] for name in sampled}
        if self.forward_and_vjp is not None:
            outputs, vjp = self.forward_and_vjp(params, x)
            loss, output_grad = self.loss.value_and_output_grad(outputs, y)
            grads = vjp(output_grad)
            return loss, {name: grads[name] for name in sampled}
        leaves = {name: t.detach().requires_grad_(True) for name, t in sampled.items()}
        outputs = self.forward({**fixed, **leaves}, x)
        if self.closed_form:
            loss, output_grad = self.loss.value_and_output_grad(outputs.detach(), y)
            grads = torch.autograd.grad(outputs, list(leaves.values()), grad_outputs=output_grad, materialize_grads=True)
        else:
            loss = self.loss.value(outputs, y)
            grads = torch.autograd.grad(loss.sum(), list(leaves.values()), materialize_grads=True)
            loss = loss.detach()
        return loss, dict(zip(leaves, grads))


def check_parameter_sets(model: nn.Module, param_sets: Sequence[Mapping[str, torch.Tensor]]) -> None:
    """Each set must hold every parameter of ``model`` with the model's shape."""
    expected = {n: tuple(p.shape) for n, p in model.named_parameters()}
    for index, params in enumerate(param_sets):
        missing = sorted(set(expected) - set(params))
        if missing:
            raise CheckpointError(f"parameter set {index} lacks {missing}")
        for name, shape in expected.items():
            if tuple(params[name].shape) != shape:
                raise CheckpointError(
                    f"parameter set {index}: {name} has shape {tuple(params[name].shape)}, the model expects {shape}"
                )
