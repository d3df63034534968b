import torch

from grokscope.llc.sgld import LocalizedLangevin, langevin_step, mala_log_acceptance, potential, potential_gradient, project_out, unit_directions


def _tree(seed, shapes=((3, 4), (3, 2))):
    g = torch.Generator().manual_seed(seed)
    return {f"p{i}": torch.randn(s, generator=g) for i, s in enumerate(shapes)}


def test_fused_step_equals_the_composed_pieces():
    w, anchor, grad, noise = (_tree(s) for s in range(4))
    nbeta, gamma, wd, eps = 120.0, 5.0, 0.01, 1e-3
    composed = langevin_step(w, potential_gradient(grad, w, anchor, nbeta, gamma, wd), eps, noise)
    fused = LocalizedLangevin(anchor, nbeta, gamma, wd, eps)(w, grad, noise)
    for name in w:
        assert torch.allclose(fused[name], composed[name], rtol=1e-5, atol=1e-6)
    # and the update is the one of Lau et al.: w − ε/2 (nβ g + γ (w − w*) + wd w) + √ε ξ
    name = "p0"
    expected = w[name] - eps / 2 * (nbeta * grad[name] + gamma * (w[name] - anchor[name]) + wd * w[name]) + eps**0.5 * noise[name]
    assert torch.allclose(fused[name], expected, rtol=1e-5, atol=1e-6)


def test_projection_leaves_no_component_along_the_direction():
    w, anchor, grad = _tree(0), _tree(1), _tree(2)
    direction = unit_directions(grad)
    projected = project_out(w, anchor, direction)
    along = sum(((projected[n] - anchor[n]) * direction[n]).flatten(1).sum(-1) for n in w)
    assert along.abs().max() < 1e-5


def test_mala_accepts_small_steps_on_a_gaussian_and_rejects_huge_ones():
    # U(w) = ½||w||² (nβ = 1, L = ½||w||², γ = 0): exact potential and gradient.
    g = torch.Generator().manual_seed(0)

    def acceptance(eps):
        w = {"x": torch.randn(512, 10, generator=g)}
        zero = {"x": torch.zeros_like(w["x"])}
        u_old = potential(0.5 * w["x"].square().sum(-1), w, zero, 1.0, 0.0, 0.0)
        grad_old = potential_gradient(w, w, zero, 1.0, 0.0, 0.0)
        new = langevin_step(w, grad_old, eps, {"x": torch.randn(512, 10, generator=g)})
        u_new = potential(0.5 * new["x"].square().sum(-1), new, zero, 1.0, 0.0, 0.0)
        grad_new = potential_gradient(new, new, zero, 1.0, 0.0, 0.0)
        return mala_log_acceptance(u_old, w, grad_old, u_new, new, grad_new, eps).clamp(max=0).exp().mean()

    assert acceptance(1e-3) > 0.99
    assert acceptance(3.5) < 0.2
