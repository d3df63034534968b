"""The quadratic floor (llc/diagnostics/quadratic.py): the Gauss-Newton spectrum against autograd's
Hessian where they must agree, the floor on models whose answer is known, and where the estimator
records it."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from grokscope.llc import estimate_llc
from grokscope.llc.diagnostics.quadratic import curvature, quadratic_floor
from grokscope.llc.validation.suite import dln_case, regular_case


def _hessian_eigenvalues(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss) -> np.ndarray:
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().double().flatten() for _, p in model.named_parameters()])
    double = model.double()

    def value(vector):
        tree = {n: part.view(s) for n, part, s in zip(names, vector.split([math.prod(s) for s in shapes]), shapes)}
        return loss(torch.func.functional_call(double, tree, (x,)), y)

    return torch.linalg.eigvalsh(torch.autograd.functional.hessian(value, flat)).numpy()


def test_gauss_newton_equals_the_hessian_at_an_exact_fit_of_squared_error():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.Linear(4, 2, bias=False))
    x = torch.randn(64, 3, dtype=torch.float64)
    with torch.no_grad():
        y = model.double()(x)
    params = dict(model.named_parameters())
    ours = curvature(model, params, list(params), x, y, "mse")[0]
    reference = _hessian_eigenvalues(model, x, y, lambda out, target: (out - target).square().mean())
    np.testing.assert_allclose(ours, reference, atol=1e-10)


def test_gauss_newton_equals_the_hessian_of_cross_entropy_for_a_model_linear_in_its_weights():
    torch.manual_seed(1)
    model = nn.Linear(4, 5)
    x = torch.randn(50, 4, dtype=torch.float64)
    y = torch.randint(0, 5, (50,))
    params = dict(model.named_parameters())
    ours = curvature(model, params, list(params), x, y, "cross_entropy")[0]
    reference = _hessian_eigenvalues(model, x, y, nn.functional.cross_entropy)
    np.testing.assert_allclose(ours, reference, atol=1e-10)
    assert curvature(model, params, list(params), x, y, nn.functional.cross_entropy) is None  # custom loss


def test_the_floor_of_a_regular_model_is_half_its_dimension_and_of_a_deep_linear_network_its_hessian_rank():
    nbeta_of = lambda n: n / math.log(n)  # noqa: E731
    for case, floor in ((regular_case(), 3.0), (dln_case([5, 3, 5], 1), (5 + 5 - 1) / 2)):
        model, (x, y) = case.build()
        params = dict(model.named_parameters())
        eigenvalues = curvature(model, params, list(params), x, y, "mse")[0]
        assert quadratic_floor(eigenvalues, nbeta_of(len(x)), 1.0) == pytest.approx(floor, rel=0.01), case.name
        assert quadratic_floor(eigenvalues, nbeta_of(len(x)), 1.0) > quadratic_floor(eigenvalues, nbeta_of(len(x)), 1e4)
    assert quadratic_floor(eigenvalues, 100.0, 0.0) is None


def test_the_estimator_records_the_floor_where_it_applies_and_not_elsewhere(monkeypatch):
    model, (x, y) = dln_case([3, 2, 3], 1).build()
    settings = dict(loss="mse", epsilon=1e-6, n_steps=200, max_steps=200, chains=2, batch_size=100, gamma=1.0, floor_probe=False)
    entry = estimate_llc(model, (x[:2000], y[:2000]), **settings).entries[0]
    assert entry.quadratic_floor == pytest.approx((3 + 3 - 1) / 2, rel=0.02)
    assert estimate_llc(model, (x[:2000], y[:2000]), **settings | dict(weight_decay=0.1)).entries[0].quadratic_floor is None
    assert estimate_llc(model, (x[:2000], y[:2000]), **settings | dict(quadratic_floor=False)).entries[0].quadratic_floor is None
    monkeypatch.setattr("grokscope.llc.diagnostics.quadratic.QUADRATIC_FLOOR_MAX_PARAMS", 5)
    assert estimate_llc(model, (x[:2000], y[:2000]), **settings).entries[0].quadratic_floor is None
