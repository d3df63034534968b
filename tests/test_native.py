"""The compiled model steps (models/mlp_native.c, models/transformer_native.c through
grokscope/native.py) against the torch path."""

import functools
import logging

import pytest
import torch
from compiled import needs_compiler

from grokscope import ConfigError, native
from grokscope.llc.sampling.objective import BatchedObjective, CrossEntropy
from grokscope.models.mlp import MLP, MLPConfig, batched_logits_and_vjp
from grokscope.models.transformer import Transformer, TransformerConfig

needs_compiler = needs_compiler("the compiled model step")


def _stacked(cfg, p: int, chains: int):
    models = [(Transformer if isinstance(cfg, TransformerConfig) else MLP)(cfg, p, seed=s) for s in range(chains)]
    return models[0], {n: torch.stack([dict(m.named_parameters())[n].detach() for m in models]) for n, _ in models[0].named_parameters()}


def _minibatch(p: int, chains: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randint(p, (chains, m, 2), generator=g)
    return x, torch.randint(p, (chains, m), generator=g)


@needs_compiler
@pytest.mark.parametrize("linear_1_tied", [False, True])
@pytest.mark.parametrize("activation", ["gelu", "relu", "quad"])
@pytest.mark.parametrize("shape", [(11, 5, 9, 7), (53, 12, 48, 64)])  # padded rows, and the example's exact vectors
def test_compiled_step_equals_the_closed_form_torch_path(linear_1_tied, activation, shape):
    p, d, h, m = shape
    cfg = MLPConfig(embed_dim=d, hidden_size=h, linear_1_tied=linear_1_tied, activation=activation)
    model, params = _stacked(cfg, p, 3)
    x, y = _minibatch(p, 3, m)
    compiled = model.compiled_loss_and_grads("cross_entropy")
    assert compiled is not None
    loss, grads = compiled(params, x, y)
    logits, vjp = batched_logits_and_vjp(params, x, cfg)
    want_loss, output_grad = CrossEntropy().value_and_output_grad(logits, y)
    want = vjp(output_grad)
    torch.testing.assert_close(loss, want_loss, rtol=1e-5, atol=1e-6)
    assert sorted(grads) == sorted(want)
    for name, expected in want.items():
        torch.testing.assert_close(grads[name], expected, rtol=1e-4, atol=1e-6, msg=name)


@needs_compiler
def test_the_compiled_mlp_step_is_the_same_function_in_avx2_vectors(monkeypatch):
    """Built for 8-float vectors (AVX2), as on a machine without AVX-512, the step still equals torch's."""
    monkeypatch.setattr(native, "load", functools.partial(native.load, VW=8))
    test_compiled_step_equals_the_closed_form_torch_path(False, "gelu", (11, 5, 9, 7))
    test_compiled_step_equals_the_closed_form_torch_path(True, "relu", (53, 12, 48, 64))


@needs_compiler
@pytest.mark.parametrize("scale", [8.0, 40.0])
def test_the_compiled_gelu_and_softmax_hold_far_into_their_tails(scale):
    """Scaled weights put pre-activations in both tails of the GELU (|z| in the hundreds, where the
    C code's own erf and exp take their other branches or clamp) and spread the logits by hundreds:
    the C numbers stay as close to a float64 computation as torch's float32 path does."""
    cfg = MLPConfig(embed_dim=12, hidden_size=48)
    model, params = _stacked(cfg, 53, 2)
    params = {n: t * scale for n, t in params.items()}
    x, y = _minibatch(53, 2, 64)
    loss, grads = model.compiled_loss_and_grads("cross_entropy")(params, x, y)
    pair = torch.stack([params["embedding.weight"][b][x[b]].flatten(1) for b in range(2)])
    first = torch.cat([params["linear1l.weight"], params["linear1r.weight"]], -1)
    pre = pair @ first.transpose(1, 2) + (params["linear1l.bias"] + params["linear1r.bias"]).unsqueeze(1)
    assert pre.min() < -10 * scale and pre.max() > 10 * scale  # both tails are reached
    exact, torch_float32 = (_loss_and_grads(params, x, y, cfg, dtype) for dtype in (torch.float64, torch.float32))
    for name, expected in exact.items():
        got = loss if name == "loss" else grads[name]
        error, torch_error = ((t.double() - expected).abs().max() for t in (got, torch_float32[name]))
        assert error <= 2 * torch_error + 1e-6 * expected.abs().max(), name  # as close as torch's float32 path


def _loss_and_grads(params, x, y, cfg, dtype):
    logits, vjp = batched_logits_and_vjp({n: t.to(dtype) for n, t in params.items()}, x, cfg)
    loss, output_grad = CrossEntropy().value_and_output_grad(logits, y)
    return {"loss": loss, **vjp(output_grad)}


@needs_compiler
@pytest.mark.parametrize("cfg", [MLPConfig(embed_dim=6, hidden_size=10), TransformerConfig(d_model=8, n_heads=2, equals_token=True)])
def test_a_chain_is_computed_alone_and_strided_minibatches_are_read_in_place(cfg):
    model, params = _stacked(cfg, 13, 4)
    compiled = model.compiled_loss_and_grads("cross_entropy")
    g = torch.Generator().manual_seed(2)
    xs, ys = torch.randint(13, (4, 5, 8, 2), generator=g), torch.randint(13, (4, 5, 8), generator=g)  # [B, T, m, ...]
    loss, grads = compiled(params, xs[:, 3], ys[:, 3])  # the sampler's view of step 3: strided across chains
    one_loss, one_grads = compiled({n: t[2:3] for n, t in params.items()}, xs[2:3, 3].contiguous(), ys[2:3, 3].contiguous())
    assert torch.equal(loss[2:3], one_loss)
    assert all(torch.equal(grads[n][2:3], one_grads[n]) for n in grads)


@needs_compiler
@pytest.mark.parametrize("cfg", [MLPConfig(embed_dim=6, hidden_size=10), TransformerConfig(d_model=8, n_heads=2)])
def test_the_full_batch_loss_is_the_compiled_steps_and_equals_the_torch_forward(cfg):
    """L_n(w*) of every set (objective.losses) comes from the compiled step, on data shared by all
    chains (stride 0), and is the torch forward's loss to float rounding."""
    model, params = _stacked(cfg, 13, 3)
    objective = BatchedObjective(model, "cross_entropy")
    g = torch.Generator().manual_seed(3)
    x, y = torch.randint(13, (1, 169, 2), generator=g).expand(3, 169, 2), torch.randint(13, (1, 169), generator=g).expand(3, 169)
    assert objective.compiled is not None and objective.compiled.accepts(params, x, y)
    loss = objective.losses(params, {}, x, y)
    torch.testing.assert_close(loss, objective.loss.value(objective.forward(params, x), y), rtol=1e-5, atol=1e-6)
    assert torch.equal(loss, objective.losses_and_grads(params, {}, x, y)[0])


@needs_compiler
@pytest.mark.parametrize("cfg, last", [(MLPConfig(embed_dim=12, hidden_size=48), "linear2.weight"),
                                       (TransformerConfig(d_model=8, n_heads=2), "unembed.weight")])
def test_a_loss_near_zero_keeps_its_digits(cfg, last):
    """A network sure of the right answers (loss ~1e-6, its top logit tens above the rest, as at a
    grokked checkpoint): the compiled loss is as close to float64 as torch's float32 path, not lost
    in rounding against the top logit (L_n(w*), and the draws compared with it, depend on it)."""
    model, params = _stacked(cfg, 53, 2)
    objective = BatchedObjective(model, "cross_entropy")
    assert objective.compiled is not None
    x, _ = _minibatch(53, 2, 1000)
    top2 = objective.forward(params, x).topk(2, -1).values
    surest = (top2[..., 0] - top2[..., 1]).topk(64, -1).indices
    x = torch.stack([x[b, surest[b]] for b in range(2)])
    y = objective.forward(params, x).argmax(-1)

    def exact(ps):
        return objective.loss.value(objective.forward({n: t.double() for n, t in ps.items()}, x), y)

    scale = next(s for s in 1.2 ** torch.arange(60.0) if exact({**params, last: params[last] * s}).max() < 1e-5)
    params = {**params, last: params[last] * scale}
    want = exact(params)
    assert want.min() > 1e-7
    compiled = objective.losses(params, {}, x, y).double()
    torch_float32 = objective.loss.value(objective.forward(params, x), y).double()
    assert ((compiled - want).abs() <= 2 * (torch_float32 - want).abs() + 1e-3 * want).all(), (compiled, want)


@needs_compiler
def test_nonfinite_parameters_give_a_nonfinite_loss():
    model, params = _stacked(MLPConfig(embed_dim=4, hidden_size=8), 7, 2)
    params["linear2.weight"][1, 0, 0] = float("inf")
    loss, _ = model.compiled_loss_and_grads("cross_entropy")(params, *_minibatch(7, 2, 5))
    assert torch.isfinite(loss[0]) and not torch.isfinite(loss[1])


@needs_compiler
def test_tokens_outside_the_vocabulary_are_refused_not_read():
    model, params = _stacked(MLPConfig(embed_dim=4, hidden_size=8), 7, 2)
    x, y = _minibatch(7, 2, 5)
    x[1, 2, 0] = 7
    with pytest.raises(ConfigError, match="outside 0..6"):
        model.compiled_loss_and_grads("cross_entropy")(params, x, y)


def test_the_objective_keeps_the_torch_path_without_the_compiled_step(monkeypatch, tmp_path, caplog):
    model, params = _stacked(MLPConfig(embed_dim=4, hidden_size=8, activation="relu"), 7, 2)
    x, y = _minibatch(7, 2, 5)
    assert model.compiled_loss_and_grads("mse") is None
    assert MLP(MLPConfig(embed_dim=4, hidden_size=8, tie_unembed=True), 7).compiled_loss_and_grads("cross_entropy") is None
    monkeypatch.setenv("GROKSCOPE_NATIVE", "0")
    assert BatchedObjective(model, "cross_entropy").compiled is None
    monkeypatch.setenv("GROKSCOPE_NATIVE", "1")
    monkeypatch.setenv("GROKSCOPE_NATIVE_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
    with caplog.at_level(logging.WARNING, logger="grokscope.native"):
        objective = BatchedObjective(model, "cross_entropy")
    assert objective.compiled is None and "Python path" in caplog.text
    assert list(tmp_path.iterdir()) == []  # no half-written library left behind
    monkeypatch.delenv("CC")
    monkeypatch.setenv("GROKSCOPE_NATIVE_CACHE", "/proc/no-such-cache")  # a cache that cannot be made
    with caplog.at_level(logging.WARNING, logger="grokscope.native"):
        assert BatchedObjective(model, "cross_entropy").compiled is None
    loss, grads = objective.losses_and_grads(params, {}, x, y)
    assert torch.isfinite(loss).all() and sorted(grads) == sorted(params)


@needs_compiler
def test_inputs_the_c_code_cannot_read_are_left_to_torch():
    model, params = _stacked(MLPConfig(embed_dim=4, hidden_size=8), 7, 2)
    x, y = _minibatch(7, 2, 5)
    compiled = model.compiled_loss_and_grads("cross_entropy")
    assert compiled.accepts(params, x, y)
    assert not compiled.accepts(params, x.int(), y)
    assert not compiled.accepts(params, x, y.int())
    assert not compiled.accepts({n: t.double() for n, t in params.items()}, x, y)


@needs_compiler
@pytest.mark.parametrize("vector_width", [None, 8])  # this machine's registers, and AVX2's
@pytest.mark.parametrize("cfg, p, m", [
    (TransformerConfig(d_model=32, n_heads=4, attention_rate=0.0), 59, 64),  # the pizza preset's shape
    (TransformerConfig(d_model=32, n_heads=4, attention_rate=1.0), 59, 64),  # clock's
    (TransformerConfig(d_model=12, n_heads=3, d_mlp=20, attention_rate=0.4), 13, 7),  # padded rows everywhere
    (TransformerConfig(d_model=128, n_heads=4, d_mlp=512, equals_token=True), 113, 16),  # nanda's, "a b ="
])
def test_compiled_transformer_step_equals_autograd(cfg, p, m, vector_width, monkeypatch):
    if vector_width is not None:
        monkeypatch.setattr(native, "load", functools.partial(native.load, VW=vector_width))
    model, params = _stacked(cfg, p, 3)
    x, y = _minibatch(p, 3, m)
    compiled = model.compiled_loss_and_grads("cross_entropy")
    assert compiled is not None and model.compiled_loss_and_grads("mse") is None
    loss, grads = compiled(params, x, y)
    autograd = BatchedObjective(model, "cross_entropy")
    autograd.compiled = None
    want_loss, want = autograd.losses_and_grads(params, {}, x, y)
    torch.testing.assert_close(loss, want_loss, rtol=1e-5, atol=1e-6)
    assert sorted(grads) == sorted(want) == sorted(params)
    for name, expected in want.items():
        assert expected.abs().max() > 0, name  # every gradient is exercised
        torch.testing.assert_close(grads[name], expected, rtol=1e-4, atol=1e-6 * expected.abs().max().item(), msg=name)


@needs_compiler
def test_the_compiled_transformer_reads_tokens_in_range_only_and_flags_nonfinite_chains():
    model, params = _stacked(TransformerConfig(d_model=8, n_heads=2, d_mlp=16), 7, 2)
    compiled = model.compiled_loss_and_grads("cross_entropy")
    x, y = _minibatch(7, 2, 5)
    params["W_out"][1, 0, 0] = float("inf")
    loss, _ = compiled(params, x, y)
    assert torch.isfinite(loss[0]) and not torch.isfinite(loss[1])
    y[0, 1] = -1
    with pytest.raises(ConfigError, match="outside 0..6"):
        compiled(params, x, y)


@needs_compiler
def test_the_kernels_flush_subnormals_only_while_they_run():
    """Confident logits put subnormal floats in the softmax gradient; the C code flushes them to
    zero for speed, in its own call only: afterwards this thread computes subnormals again."""
    import numpy as np

    tiny = np.float32(1e-38)
    assert tiny / np.float32(16) != 0  # subnormal arithmetic before the call
    for cfg, p in ((MLPConfig(embed_dim=4, hidden_size=8), 7), (TransformerConfig(d_model=8, n_heads=2, d_mlp=16), 7)):
        model, params = _stacked(cfg, p, 2)
        params = {n: t * 30.0 for n, t in params.items()}  # logits hundreds apart: the exponentials underflow
        loss, grads = model.compiled_loss_and_grads("cross_entropy")(params, *_minibatch(p, 2, 5))
        assert torch.isfinite(loss).all() and all(torch.isfinite(g).all() for g in grads.values())
        assert tiny / np.float32(16) != 0, cfg.kind  # the caller's floating-point mode is restored
