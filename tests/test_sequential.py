"""The hand-batched passes of plain nn.Sequential stacks (models/sequential.py) against autograd
through torch.func.vmap, the generic path every other module takes."""

import pytest
import torch
from generic import Generic
from torch import nn

from grokscope.llc import estimate_llc
from grokscope.llc.sampling.objective import BUILTIN_LOSSES, BatchedObjective
from grokscope.models import sequential_stack


def _stacks():
    torch.manual_seed(0)
    return {
        "linear": nn.Linear(5, 3),
        "deep linear": nn.Sequential(nn.Linear(4, 6, bias=False), nn.Linear(6, 3, bias=False), nn.Linear(3, 2, bias=False)),
        "mlp": nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8), nn.GELU(), nn.Linear(8, 3),
                             nn.Identity()),
    }


@pytest.mark.parametrize("name", list(_stacks()))
@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_the_stack_passes_equal_autograd_through_vmap(name, loss):
    model = _stacks()[name]
    assert sequential_stack(model) is not None and sequential_stack(Generic(model)) is None
    chains, m = 3, 7
    params = {n: p.detach() + 0.1 * torch.randn(chains, *p.shape) for n, p in model.named_parameters()}
    x = torch.randn(chains, m, model[0].in_features if isinstance(model, nn.Sequential) else model.in_features)
    outputs = BatchedObjective(model, "mse").forward(params, x)
    y = torch.randn_like(outputs) if loss == "mse" else torch.randint(outputs.shape[-1], outputs.shape[:-1])
    ours, generic = BatchedObjective(model, loss), BatchedObjective(Generic(model), loss)
    loss_a, grads_a = ours.losses_and_grads(params, {}, x, y)
    loss_b, grads_b = generic.losses_and_grads({f"inner.{n}": t for n, t in params.items()}, {}, x, y)
    torch.testing.assert_close(loss_a, loss_b)
    for n in params:
        torch.testing.assert_close(grads_a[n], grads_b[f"inner.{n}"], rtol=1e-5, atol=1e-6)


def test_other_modules_keep_the_generic_path():
    assert sequential_stack(nn.Sequential(nn.Linear(2, 2), nn.Softmax(dim=-1))) is None
    assert sequential_stack(nn.Sequential(nn.Linear(2, 2), nn.GELU(approximate="tanh"))) is None

    class Twice(nn.Sequential):
        def forward(self, x):
            return 2 * super().forward(x)

    assert sequential_stack(Twice(nn.Linear(2, 2))) is None


def test_a_stack_estimated_alone_equals_it_batched():
    model = _stacks()["mlp"]
    x = torch.randn(300, 4)
    data = (x, model(x).detach() + 0.1 * torch.randn(300, 3))
    params = [{n: p.detach() + 0.01 * k for n, p in model.named_parameters()} for k in range(3)]
    settings = dict(loss="mse", epsilon=1e-4, gamma=10.0, n_steps=60, max_steps=60, batch_size=30, chains=2)
    together = estimate_llc(model, data, params, **settings)
    for k in range(3):
        alone = estimate_llc(model, data, params[k], checkpoint_ids=[k], **settings).entries[0]
        assert alone.llc_per_chain == together.entries[k].llc_per_chain


@pytest.mark.parametrize("name", ["mse", "cross_entropy"])
def test_a_built_in_losss_closed_form_output_gradient_is_autograds(name):
    """The value and output gradient the hand-batched and compiled paths use, per chain, against
    torch's own loss and autograd."""
    g = torch.Generator().manual_seed(0)
    outputs = torch.randn(3, 7, 5, generator=g, requires_grad=True)
    if name == "mse":
        targets, reference = torch.randn(3, 7, 5, generator=g), torch.nn.functional.mse_loss
    else:
        targets, reference = torch.randint(5, (3, 7), generator=g), torch.nn.functional.cross_entropy
    value, output_grad = BUILTIN_LOSSES[name]().value_and_output_grad(outputs.detach().clone(), targets)
    want = torch.stack([reference(outputs[b], targets[b]) for b in range(3)])
    torch.testing.assert_close(value, want.detach())
    torch.testing.assert_close(output_grad, torch.autograd.grad(want.sum(), outputs)[0])
