import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from compiled import needs_compiler
from generic import Generic
from torch import nn

from grokscope import CheckpointError, ConfigError, train
from grokscope.llc import estimate_llc, sgld_config
from grokscope.llc.diagnostics.health import shows_bias
from grokscope.llc.diagnostics.summary import cut_after_divergence, thinned_steps
from grokscope.llc.sampling.blocks import run_in_blocks
from grokscope.llc.sampling.kernels import project_out, unit_directions
from grokscope.llc.sampling.objective import BatchedObjective
from grokscope.llc.sampling.observers import LossTrace
from grokscope.llc.validation.suite import DeepLinear, PowerModel

FAST = dict(gamma=5.0, epsilon=1e-3, n_steps=200, batch_size=32, chains=3, floor_probe=False)  # the probe: test_floor_probe.py


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from grokscope import build_config

    sets = {"p": 13, "train_frac": 0.7, "embed_dim": 6, "hidden_size": 16, "n_steps": 300, "n_checkpoints": 3, "batch_size": 32}
    return train(build_config("example", overrides=sets), tmp_path_factory.mktemp("llc") / "run", progress=False)


def _inputs(run):
    data = run.dataset()
    return run.new_model(), (data.train_x, data.train_y), [run.state_dict(s) for s in run.steps]


def test_batched_equals_alone_bit_for_bit(tiny_run):
    model, data, params = _inputs(tiny_run)
    steps = tiny_run.steps
    together = estimate_llc(model, data, params, checkpoint_ids=steps, **FAST)
    alone = estimate_llc(model, data, params[2], checkpoint_ids=[steps[2]], **FAST)
    assert together.entries[2].llc_per_chain == alone.entries[0].llc_per_chain
    assert together.entries[2].loss_trace == alone.entries[0].loss_trace
    # and the chains really differ from each other
    assert len(set(together.entries[2].llc_per_chain)) == FAST["chains"]


def test_continuing_the_chains_equals_one_longer_run(tiny_run):
    """run_chains from 0 to n and then from n to 2n (same state and streams) takes the steps one call
    from 0 to 2n takes, and draws the same minibatches and noise."""
    from grokscope.llc.sampling.kernels import SGLD, ChainSettings
    from grokscope.llc.sampling.loop import ChainStreams, run_chains

    model, (x, y), params = _inputs(tiny_run)
    objective = BatchedObjective(model, "cross_entropy")
    anchors = {n: t.unsqueeze(0).repeat(3, *[1] * t.dim()) for n, t in params[-1].items()}
    settings = ChainSettings.broadcast(3, epsilon=1e-3, gamma=5.0, nbeta=30.0, weight_decay=0.0)
    n_params = sum(t[0].numel() for t in anchors.values())
    xs, ys = x.expand(3, *x.shape), y.expand(3, *y.shape)
    finals, traces = [], []
    for cuts in ([0, 250], [0, 97, 250]):  # 97: not a multiple of any block length
        streams = ChainStreams([(0, "test", c) for c in range(3)], [len(y)] * 3, 16, n_params, torch.device("cpu"))
        state, trace = SGLD().init(anchors, settings), []
        for start, stop in zip(cuts, cuts[1:]):
            observer = LossTrace(start, stop, 3, torch.device("cpu"))
            state = run_chains(objective, SGLD(), state, {}, xs, ys, streams, start, stop, [observer], progress=False)
            trace.append(observer.result()["losses"])
        finals.append(state.w)
        traces.append(torch.cat(trace))
    assert torch.equal(traces[0], traces[1])
    assert all(torch.equal(finals[0][n], finals[1][n]) for n in finals[0])


def test_chains_continue_until_settled_and_finished_sets_leave_the_batch(tiny_run):
    """Sets needing different budgets, estimated together, give each its numbers alone; a fixed
    budget (max_steps = n_steps) runs exactly n_steps."""
    model, data, params = _inputs(tiny_run)
    steps = tiny_run.steps
    settings = dict(FAST, n_steps=200, max_steps=3200)
    # the checkpoints, and the last one again at a step size MALA rejects: that set is biased after
    # its first block (more steps cannot help) while the others go on
    epsilons = [FAST["epsilon"]] * len(params) + [0.1]
    together = estimate_llc(model, data, params + params[-1:], checkpoint_ids=steps + steps[-1:],
                            per_set=[{"epsilon": e} for e in epsilons], **settings)
    used = [e.steps_used for e in together.entries]
    assert len(set(used)) > 1 and all(u in (200, 400, 800, 1600, 3200) for u in used)  # the budget doubles, set by set
    for k, (weights, step, epsilon) in enumerate(zip(params + params[-1:], steps + steps[-1:], epsilons)):
        alone = estimate_llc(model, data, weights, checkpoint_ids=[step], **dict(settings, epsilon=epsilon)).entries[0]
        assert (alone.llc_per_chain, alone.steps_used, alone.status) == (together.entries[k].llc_per_chain, used[k],
                                                                         together.entries[k].status)
    for entry in together.entries:  # a set stops early only when it is ok, or more steps cannot help
        assert entry.steps_used == 3200 or entry.status == "ok" or shows_bias(entry.flags)
    fixed = estimate_llc(model, data, params[-1], **dict(settings, max_steps=200)).entries[0]
    assert fixed.steps_used == 200
    assert fixed.status == "ok" or shows_bias(fixed.flags) or any(f.startswith("budget spent") for f in fixed.flags)


def test_blocks_double_until_each_group_is_judged_done_and_the_rest_continue_on_their_own_rows():
    """run_in_blocks on counting chains: group g needs (g + 1) · 100 steps; the finished leave."""
    alive = [0, 0, 1, 1, 2, 2]  # two chains per group, in chain order
    calls = []

    def run(start, stop):
        calls.append((start, stop, list(alive)))
        steps = torch.arange(start, stop, dtype=torch.float32)[:, None]
        return {"losses": steps + torch.tensor(alive, dtype=torch.float32)[None] * 1000}

    def judge(group, record):
        steps = record["losses"].shape[0]
        return SimpleNamespace(last=float(record["losses"][-1, 0]), flags=[]), steps < (group + 1) * 100

    def keep(rows, groups):
        alive[:] = [alive[r] for r in rows]
        assert sorted(set(alive)) == list(groups)

    done = run_in_blocks([0, 1, 2], 2, 100, 250, run, judge, keep, "counted steps")
    assert [(a, b) for a, b, _ in calls] == [(0, 100), (100, 200), (200, 250)]  # doubling, cut at the cap
    assert [c[2] for c in calls] == [[0, 0, 1, 1, 2, 2], [1, 1, 2, 2], [2, 2]]
    for group, steps in ((0, 100), (1, 200), (2, 250)):
        record = done[group].record["losses"]
        assert record.shape == (steps, 2) and torch.equal(record[:, 0], torch.arange(steps) + 1000.0 * group)
        assert done[group].entry.last == steps - 1 + 1000 * group
    # group 2 needed 300: the cap stopped it, and its entry says so
    assert [done[g].entry.flags for g in range(3)] == [[], [], ["budget spent: 250 counted steps"]]


def test_a_time_cap_stops_the_chains_after_the_block_it_falls_in(tiny_run):
    model, data, params = _inputs(tiny_run)
    result = estimate_llc(model, data, params, **dict(FAST, n_steps=100, max_steps=3200, max_seconds=1e-9))
    for entry in result.entries:
        assert entry.steps_used == 100
        assert entry.status == "ok" or shows_bias(entry.flags) or "max_seconds 1e-09" in entry.flags[-1]


@pytest.mark.parametrize("generic", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_thread_groups_give_the_numbers_of_one_loop(tiny_run, monkeypatch, generic):
    import grokscope.llc.estimator as estimator

    model, data, params = _inputs(tiny_run)
    if generic:  # a model without a hand-batched forward: vmap over functional_call, one model copy per thread
        model = Generic(model)
        params = [{f"inner.{k}": v for k, v in p.items()} for p in params]
    settings = dict(FAST, save_samples=2, probe_every=20)
    probes = {"test": (data[0][:16], data[1][:16])}
    threads = torch.get_num_threads()
    results = {}
    for workers in (1, 3):
        monkeypatch.setattr(estimator, "cpu_workers", lambda device, w=workers: w)
        results[workers] = estimate_llc(model, data, params, probes=probes, **settings)
        assert torch.get_num_threads() == threads  # restored after the groups ran
    one, three = results[1], results[3]
    assert [e.llc_per_chain for e in three.entries] == [e.llc_per_chain for e in one.entries]
    assert [e.mala_acceptance for e in three.entries] == [e.mala_acceptance for e in one.entries]
    assert [e.probe_losses for e in three.entries] == [e.probe_losses for e in one.entries]
    assert torch.equal(three.samples, one.samples)


def test_thread_groups_restore_the_thread_count_when_a_group_raises():
    from grokscope.llc.sampling.thread_groups import map_groups

    def failing(group, first, alone):
        assert torch.get_num_threads() == 1  # each group's worker has one intra-op thread
        raise ValueError("a group failed")

    threads = torch.get_num_threads()
    with pytest.raises(ValueError, match="a group failed"):
        map_groups(failing, list(range(4)), workers=2)
    assert torch.get_num_threads() == threads


def test_groups_are_contiguous_and_balanced():
    from grokscope.llc.sampling.thread_groups import balanced_groups

    assert balanced_groups(list(range(7)), 3) == [[0, 1, 2], [3, 4], [5, 6]]
    assert balanced_groups([4, 9], 5) == [[4], [9]]
    assert balanced_groups([4], 1) == [[4]]


def test_runs_sampled_together_on_their_own_data_equal_each_run_alone(tiny_run, tmp_path):
    from grokscope.llc.api import run_llc
    from grokscope.llc.runs.checkpoints import run_llc_together

    other = train(tiny_run.config.model_copy(update={"training": tiny_run.config.training.model_copy(update={"seed": 1})}),
                  tmp_path / "seed1", progress=False)
    assert not torch.equal(other.dataset().train_x, tiny_run.dataset().train_x)  # its own split
    config = sgld_config(**FAST, save_samples=4)
    together = run_llc_together([tiny_run, other], config, "all", progress=False)
    for run, part in zip([tiny_run, other], together):
        alone = run_llc(run, config, "all", progress=False)
        assert [e.llc_per_chain for e in part.entries] == [e.llc_per_chain for e in alone.entries]
        assert [e.init_loss for e in part.entries] == [e.init_loss for e in alone.entries]
        assert torch.equal(part.samples, alone.samples)
        assert part.settings["run"] == str(run.path)


def test_per_set_training_data_must_match_in_number_and_may_differ_in_size(tiny_run):
    model, data, params = _inputs(tiny_run)
    with pytest.raises(ConfigError, match=f"2 training sets for {len(params)} parameter sets"):
        estimate_llc(model, [data, data], params, **FAST)
    smaller = (data[0][:-7], data[1][:-7])
    sets = [data, smaller] + [data] * (len(params) - 2)
    together = estimate_llc(model, sets, params, **FAST)
    alone = estimate_llc(model, [smaller], params[1:2], checkpoint_ids=[1], **FAST)
    assert together.entries[1].llc_per_chain == alone.entries[0].llc_per_chain  # its own rows, its own nβ
    assert together.settings["n_train"] == [len(y) for _, y in sets]
    with pytest.raises(ConfigError, match="empty"):
        estimate_llc(model, [(data[0][:0], data[1][:0])] + sets[1:], params, **FAST)


def test_seed_controls_the_numbers(tiny_run):
    model, data, params = _inputs(tiny_run)
    a = estimate_llc(model, data, params[-1], **FAST)
    b = estimate_llc(model, data, params[-1], **FAST)
    c = estimate_llc(model, data, params[-1], **{**FAST, "seed": 1})
    assert a.entries[0].llc_per_chain == b.entries[0].llc_per_chain
    assert a.entries[0].llc_per_chain != c.entries[0].llc_per_chain


@pytest.mark.slow
def test_hand_batched_and_vmap_paths_agree(tiny_run):
    model, data, params = _inputs(tiny_run)

    wrapped = Generic(model)
    prefixed = [{f"inner.{k}": v for k, v in p.items()} for p in params]
    fast = estimate_llc(model, data, params, **FAST)
    generic = estimate_llc(wrapped, data, prefixed, **FAST)
    for a, b in zip(fast.entries, generic.entries):
        assert a.init_loss == pytest.approx(b.init_loss, rel=1e-5)
        assert a.llc_mean == pytest.approx(b.llc_mean, rel=2e-3)


@pytest.mark.parametrize("linear_1_tied", [False, True])
@pytest.mark.parametrize("tie_unembed", [False, True])
@pytest.mark.parametrize("activation", ["gelu", "relu", "quad"])
def test_closed_form_backward_equals_autograd(linear_1_tied, tie_unembed, activation):
    from grokscope.models.mlp import (
        MLP,
        MLPConfig,
        batched_logits,
        batched_logits_and_vjp,
    )

    cfg = MLPConfig(embed_dim=5, hidden_size=9, linear_1_tied=linear_1_tied, tie_unembed=tie_unembed, activation=activation)
    models = [MLP(cfg, 11, seed=s) for s in range(3)]
    params = {n: torch.stack([dict(m.named_parameters())[n].detach() for m in models]) for n, _ in models[0].named_parameters()}
    g = torch.Generator().manual_seed(0)
    x, upstream = torch.randint(11, (3, 7, 2), generator=g), torch.randn(3, 7, 11, generator=g)
    leaves = {n: t.clone().requires_grad_(True) for n, t in params.items()}
    expected = dict(zip(leaves, torch.autograd.grad(batched_logits(leaves, x, cfg), list(leaves.values()), upstream)))
    logits, vjp = batched_logits_and_vjp(params, x, cfg)
    grads = vjp(upstream)
    assert torch.equal(logits, batched_logits(params, x, cfg))
    assert sorted(grads) == sorted(expected)
    for name, want in expected.items():
        assert grads[name].shape == want.shape
        torch.testing.assert_close(grads[name], want, rtol=1e-5, atol=1e-6, msg=name)


NO_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine: the GPU path is not exercised")


def _assert_cuda_objective_matches_cpu(model, stacked, x, y):
    """Per-chain loss and gradients of the parameter sets ``stacked`` on a minibatch, CUDA against CPU."""
    objective = BatchedObjective(model, "cross_entropy")
    loss, grads = objective.losses_and_grads(stacked, {}, x, y)
    loss_gpu, grads_gpu = objective.losses_and_grads({n: t.cuda() for n, t in stacked.items()}, {}, x.cuda(), y.cuda())
    torch.testing.assert_close(loss_gpu.cpu(), loss, rtol=1e-4, atol=1e-5)
    for name in grads:
        torch.testing.assert_close(grads_gpu[name].cpu(), grads[name], rtol=1e-3, atol=1e-5)


@NO_CUDA
def test_the_cuda_path_matches_the_cpu(tiny_run):
    model, data, params = _inputs(tiny_run)
    stacked = {n: torch.stack([p[n] for p in params]) for n in params[0]}
    _assert_cuda_objective_matches_cpu(model, stacked, data[0][:32].expand(len(params), -1, -1), data[1][:32].expand(len(params), -1))
    result = estimate_llc(model, data, params, device="cuda", **FAST)
    assert result.settings["device"] == "cuda"
    assert all(np.isfinite(e.llc_mean) and e.llc_mean > 0 for e in result.entries)


@NO_CUDA
def test_the_transformer_on_cuda_matches_the_cpu():
    from grokscope.config import TransformerConfig
    from grokscope.models import Transformer

    p = 7
    model = Transformer(TransformerConfig(d_model=8, n_heads=2, d_mlp=16), p, seed=0)
    x = torch.cartesian_prod(torch.arange(p), torch.arange(p))
    y = (x[:, 0] + x[:, 1]) % p
    stacked = {n: t.detach() + 0.1 * torch.randn(3, *t.shape) for n, t in model.named_parameters()}
    _assert_cuda_objective_matches_cpu(model, stacked, x[:32].expand(3, -1, -1), y[:32].expand(3, -1))
    result = estimate_llc(model, (x, y), device="cuda", **{**FAST, "epsilon": 1e-4})
    assert result.settings["device"] == "cuda" and np.isfinite(result.entries[0].llc_mean)


def test_result_fields_and_json(tiny_run):
    model, data, params = _inputs(tiny_run)
    result = estimate_llc(model, data, params, training_steps=tiny_run.steps, mala=True, **FAST)
    entry = result.entries[-1]
    assert entry.step == tiny_run.steps[-1]
    assert len(entry.llc_per_chain) == 3 and entry.diverged_chains == 0
    assert entry.llc_std > 0 and entry.llc_sem == pytest.approx(entry.llc_std / np.sqrt(3))
    assert entry.llc_mean == pytest.approx(np.mean(entry.llc_per_chain))
    assert 0.9 < entry.r_hat < 1.5 and entry.ess_bulk > 1 and entry.ess_tail > 1 and isinstance(entry.flags, list)
    assert 0 <= entry.frac_below_init <= 1 and 0 < entry.mala_acceptance <= 1
    assert len(entry.loss_trace) == 3 and len(entry.loss_trace[0]) == len(entry.trace_steps) <= 200
    loaded = json.loads(result.to_json())
    assert loaded["settings"]["nbeta_convention"] == "n/ln n"
    n = data[1].shape[0]
    assert loaded["settings"]["nbeta"] == pytest.approx(n / np.log(n))
    assert loaded["settings"]["package_version"] and loaded["settings"]["seed"] == 0
    assert [r["step"] for r in result.rows()] == tiny_run.steps
    assert result.plot(tiny_run.metrics).axes


def test_nbeta_conventions(tiny_run):
    model, data, params = _inputs(tiny_run)
    n = data[1].shape[0]
    m_ln_m = estimate_llc(model, data, params[-1], nbeta="m/ln m", **{**FAST, "n_steps": 20})
    assert m_ln_m.settings["nbeta"] == pytest.approx(32 / np.log(32)) and m_ln_m.settings["nbeta_convention"] == "m/ln m"
    fixed = estimate_llc(model, data, params[-1], nbeta=10.0, temp_multiplier=2.0, **{**FAST, "n_steps": 20})
    assert fixed.settings["nbeta"] == 5.0
    scaled = estimate_llc(model, data, params[-1], n_multiplier=3.0, **{**FAST, "n_steps": 20})
    assert scaled.settings["nbeta"] == pytest.approx(3 * n / np.log(3 * n))


def test_original_study_names_are_accepted():
    cfg = sgld_config(gamma=5, epsilon=0.001, n_steps=3000, m=64, restrict_to_orth_grad=True, weight_decay=0.0, num_chains=2)
    assert (cfg.batch_size, cfg.chains, cfg.warmup_steps) == (64, 2, 750)


def test_trained_network_has_a_higher_llc_than_its_initialisation(tiny_run):
    # λ̂ of the trained network exceeds that of the initialisation, as in the original study.
    model, data, params = _inputs(tiny_run)
    result = estimate_llc(model, data, params, **FAST)
    assert result.entries[-1].llc_mean > result.entries[0].llc_mean


def test_orth_restriction_removes_the_gradient_component(tiny_run):
    model, data, params = _inputs(tiny_run)
    settings = {**FAST, "save_samples": 5}
    anchor = torch.cat([params[1][n].reshape(-1) for n, _ in model.named_parameters()])
    model.load_state_dict(params[1])
    loss = nn.functional.cross_entropy(model(data[0]), data[1])
    grad = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.parameters()))])
    unit = grad / grad.norm()

    def along(result):
        moves = result.samples.reshape(-1, anchor.numel()) - anchor
        return (moves @ unit).abs().max().item(), moves.norm(dim=1).min().item()

    restricted = along(estimate_llc(model, data, params[1], restrict_to_orth_grad=True, **settings))
    free = along(estimate_llc(model, data, params[1], **settings))
    assert restricted[0] < 1e-4 * restricted[1]
    assert free[0] > 1e-2 * free[1]


def test_zero_gradient_skips_the_projection():
    grad = {"a": torch.zeros(2, 3), "b": torch.zeros(2, 1)}
    direction = unit_directions(grad)
    w = {"a": torch.randn(2, 3), "b": torch.randn(2, 1)}
    anchor = {"a": torch.zeros(2, 3), "b": torch.zeros(2, 1)}
    projected = project_out(w, anchor, direction)
    assert all(torch.equal(projected[k], w[k]) for k in w)
    # end to end: at the origin of a deep linear network the gradient is zero
    model = DeepLinear([3, 2, 3])
    params = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    x = torch.randn(200, 3)
    data = (x, torch.zeros(200, 3))
    kw = dict(epsilon=1e-3, gamma=1.0, n_steps=100, batch_size=20, chains=2)
    a = estimate_llc(model, data, params, loss="mse", restrict_to_orth_grad=True, **kw)
    b = estimate_llc(model, data, params, loss="mse", **kw)
    assert a.entries[0].llc_per_chain == b.entries[0].llc_per_chain


def test_restricted_subset_never_moves(tiny_run, monkeypatch):
    model, data, params = _inputs(tiny_run)
    result = estimate_llc(model, data, params[-1], params="^embedding", save_samples=3, **FAST)
    assert result.settings["sampled_parameters"] == ["embedding.weight"]
    assert result.samples.shape[-1] == params[-1]["embedding.weight"].numel()
    full = estimate_llc(model, data, params[-1], **FAST)
    assert result.entries[0].llc_mean < full.entries[0].llc_mean

    seen, original = [], BatchedObjective.losses_and_grads

    def spy(self, sampled, fixed, x, y):  # records what the loss and gradient read of a parameter outside the subset
        seen.append({**fixed, **sampled}["linear2.weight"].detach().clone())
        return original(self, sampled, fixed, x, y)

    monkeypatch.setattr(BatchedObjective, "losses_and_grads", spy)
    estimate_llc(model, data, params[-1], params="^embedding", **FAST)
    assert len(seen) > FAST["n_steps"]
    assert all(torch.equal(s, params[-1]["linear2.weight"].expand_as(s)) for s in seen)


def test_every_chain_diverging_gives_a_null_estimate_with_reason(tiny_run):
    model, data, params = _inputs(tiny_run)
    result = estimate_llc(model, data, params[-1], epsilon=50.0, gamma=1.0, n_steps=50, batch_size=32, chains=2)
    entry = result.entries[0]
    assert entry.llc_mean is None and entry.diverged_chains == 2 and "diverged" in entry.reason
    json.loads(result.to_json())  # still valid JSON (no NaN)


def test_a_diverged_chain_is_cut_at_its_first_bad_loss():
    losses = torch.tensor([[1.0, 1.0], [1.0, float("inf")], [1.0, 2.0], [1.0, 1.0]])
    trace = LossTrace(10, 14, 2, torch.device("cpu"))  # a block of steps 10..13
    for step, loss in enumerate(losses, start=10):
        trace.observe(step, None, loss, None, None, None)
    losses = trace.result()["losses"]
    assert cut_after_divergence(losses).tolist() == [False, True]
    assert torch.isnan(losses[1:, 1]).all() and torch.isfinite(losses[:, 0]).all()


def test_bad_settings_fail_before_sampling(tiny_run):
    model, data, params = _inputs(tiny_run)
    for bad, match in [
        (dict(epsilon=0.0), "epsilon"),
        (dict(n_steps=0), "n_steps"),
        (dict(batch_size=0), "batch_size"),
        (dict(batch_size=10**6), "exceeds"),
        (dict(burn_in=300, n_steps=300), "burn_in"),
        (dict(params="nope"), "matches no parameter"),
        (dict(gamma=-1.0), "gamma"),
        (dict(device="cuda"), "cuda"),
        (dict(nbeta=-2.0), "nbeta"),
    ]:
        with pytest.raises(ConfigError, match=match):
            estimate_llc(model, data, params[-1], **{**FAST, **bad})
    wrong = dict(params[-1])
    wrong["linear2.weight"] = torch.zeros(3, 3)
    with pytest.raises(CheckpointError, match="linear2.weight has shape"):
        estimate_llc(model, data, wrong, **FAST)


def test_power_model_generic_path_runs():
    x = 2 * torch.randn(300, 1)
    result = estimate_llc(PowerModel((0, 1)), (x, 0.25 * torch.randn(300, 1)), loss="mse", epsilon=1e-4, n_steps=300, batch_size=50, chains=2)
    assert result.entries[0].llc_mean is not None


@pytest.mark.parametrize("sampler, start_spread", [("sgld", 0.0), ("rmsprop_sgld", 0.0), ("sgld", 0.05)])
def test_alone_equals_batched_for_each_kernel_with_masks_and_per_set_settings(tiny_run, sampler, start_spread):
    model, data, params = _inputs(tiny_run)
    steps = tiny_run.steps
    masks = {"linear2.weight": torch.rand(model.linear2.weight.shape, generator=torch.Generator().manual_seed(0)) > 0.3,
             "embedding.weight": torch.ones_like(model.embedding.weight, dtype=torch.bool)}
    per_set = [dict(epsilon=1e-3, gamma=5.0), dict(epsilon=3e-4, nbeta=40.0), dict(epsilon=2e-3, gamma=2.0, weight_decay=0.01)]
    settings = {**FAST, "sampler": sampler, "save_samples": 3, "start_spread": start_spread}
    params, steps = params[:3], steps[:3]
    together = estimate_llc(model, data, params, checkpoint_ids=steps, masks=masks, per_set=per_set, **settings)
    for k in range(3):
        alone = estimate_llc(model, data, params[k], checkpoint_ids=[steps[k]], masks=masks, **{**settings, **per_set[k]})
        assert together.entries[k].llc_per_chain == alone.entries[0].llc_per_chain
        assert together.entries[k].loss_trace == alone.entries[0].loss_trace
        assert torch.equal(together.part(k, k + 1).samples, alone.samples)
        assert together.entries[k].settings["epsilon"] == per_set[k]["epsilon"]
    # masked entries of the sampled tensors never moved
    names = together.settings["sampled_parameters"]
    assert names == ["embedding.weight", "linear2.weight"]
    offset = params[0]["embedding.weight"].numel()
    frozen = ~masks["linear2.weight"].flatten()
    for k in range(3):
        drawn = together.part(k, k + 1).samples[..., offset:]
        assert torch.equal(drawn[..., frozen], params[k]["linear2.weight"].flatten()[frozen].expand_as(drawn[..., frozen]))
        assert (drawn[..., ~frozen] != params[k]["linear2.weight"].flatten()[~frozen]).any()
    assert together.settings["selection"]["masked_elements"] == {"linear2.weight": int(masks["linear2.weight"].sum())}
    assert together.settings["sampler"] == sampler


def test_rmsprop_sgld_gives_a_sensible_llc(tiny_run):
    model, data, params = _inputs(tiny_run)
    sgld = estimate_llc(model, data, params[-1], **{**FAST, "n_steps": 400})
    rms = estimate_llc(model, data, params[-1], sampler="rmsprop_sgld", **{**FAST, "n_steps": 400, "epsilon": 1e-4})
    assert rms.entries[0].llc_mean > 0 and rms.entries[0].llc_per_chain != sgld.entries[0].llc_per_chain
    assert rms.settings["rmsprop_alpha"] == 0.99 and rms.settings["rmsprop_eps"] == 0.1


def test_step_metrics_record_each_term(tiny_run):
    model, data, params = _inputs(tiny_run)
    eps = FAST["epsilon"]
    result = estimate_llc(model, data, params[-1], step_metrics=True, trace_points=20, **FAST)
    metrics = result.entries[0].step_metrics
    assert metrics["steps"] == thinned_steps(FAST["n_steps"], 20).tolist()  # within the first block of steps
    n_params = result.settings["n_sampled_parameters"]
    for c in range(FAST["chains"]):
        assert metrics["distance"][c][0] == 0.0 and metrics["localisation"][c][0] == 0.0  # the chain starts at w*
        assert metrics["distance"][c][-1] > 0 and metrics["localisation"][c][-1] > 0
        assert metrics["weight_decay"][c][-1] == 0.0  # no weight decay was asked for
        # the noise added is √ε ξ with ξ ~ N(0, I_P): its norm is close to √(ε P)
        assert all(abs(v / np.sqrt(eps * n_params) - 1) < 0.1 for v in metrics["noise"][c])
        assert all(v > 0 for v in metrics["gradient"][c])
    loaded = json.loads(result.to_json())
    assert loaded["checkpoints"][0]["step_metrics"]["noise"] == metrics["noise"]


def test_probe_losses_follow_each_chain(tiny_run):
    model, data, params = _inputs(tiny_run)
    test = tiny_run.dataset()
    probes = {"test": (test.test_x, test.test_y), "train": data}
    result = estimate_llc(model, data, params, probes=probes, probe_every=50, probe_per_sample=True, **FAST)
    entry = result.entries[-1]
    probe = entry.probe_losses
    assert probe["steps"] == list(range(0, entry.steps_used, 50)) and entry.steps_used >= FAST["n_steps"]
    model.load_state_dict(params[-1])
    with torch.no_grad():
        direct = nn.functional.cross_entropy(model(test.test_x), test.test_y).item()
    assert probe["init"]["test"] == pytest.approx(direct, rel=1e-5)
    for c in range(FAST["chains"]):  # step 0 is w* itself
        assert probe["chains"]["test"][c][0] == pytest.approx(direct, rel=1e-5)
        assert probe["chains"]["test"][c][-1] != probe["chains"]["test"][c][0]
    assert probe["init"]["train"] == pytest.approx(entry.init_loss, rel=1e-5)
    samples = result.part(len(params) - 1, len(params)).probe_samples["test"]  # NaN past its steps where another set ran longer
    recorded = len(probe["steps"])
    assert samples.shape[1:] == (FAST["chains"], test.test_y.shape[0]) and samples.shape[0] >= recorded
    assert not samples[:recorded].isnan().any() and samples[recorded:].isnan().all()
    assert samples[0, 0].mean().item() == pytest.approx(direct, rel=1e-5)


def test_bad_sampler_masks_settings_and_probes_fail_before_sampling(tiny_run):
    model, data, params = _inputs(tiny_run)
    params = params[:3]
    shape = model.linear2.weight.shape
    for kwargs, match in [
        (dict(sampler="hmc"), "sgld, rmsprop_sgld"),
        (dict(params="head0"), "components are \\['embedding', 'layer1', 'output'\\]"),
        (dict(masks={"linear2.weight": torch.ones(3, 3, dtype=torch.bool)}), "mask of linear2.weight has shape"),
        (dict(masks={"linear2.weight": torch.zeros(shape, dtype=torch.bool)}), "select no entry"),
        (dict(masks={"nope": torch.ones(2, dtype=torch.bool)}), "does not have"),
        (dict(masks={"linear2.weight": torch.ones(shape)}), "bool tensor"),
        (dict(per_set=[dict(epsilon=1e-3)]), "1 entries for 3 parameter sets"),
        (dict(per_set=[dict(chains=2)] * 3), "cannot differ per set"),
        (dict(per_set=[dict(epsilon=-1.0)] * 3), "epsilon"),
        (dict(probes={"bad": (torch.zeros(5, 3, dtype=torch.long), torch.zeros(5, dtype=torch.long))}), "probe set 'bad'"),
        (dict(probes={"bad": (torch.zeros(5, 2, dtype=torch.long), torch.zeros(4, dtype=torch.long))}), "same number of rows"),
        (dict(rmsprop_alpha=1.5), "rmsprop_alpha"),
        (dict(epsilon=float("inf")), "finite"),
    ]:
        with pytest.raises(ConfigError, match=match):
            estimate_llc(model, data, params, **{**FAST, **kwargs})


def test_epsilon_auto_estimates_every_set_at_the_calibrated_step_size(tiny_run):
    model, data, params = _inputs(tiny_run)
    # γ = 20: at FAST's 5 the chains at this barely trained network's last checkpoint leave its basin (every cell biased)
    settings = {**FAST, "epsilon": "auto", "gamma": 20.0, "n_steps": 300, "chains": 4}
    result = estimate_llc(model, data, params, training_steps=tiny_run.steps, **settings)
    calibration = result.settings["calibration"]
    chosen = calibration["recommended"]["epsilon"]
    assert result.settings["epsilon"] == chosen and calibration["parameter_set"] == len(params) - 1
    assert chosen in [cell["epsilon"] for cell in calibration["cells"]] and calibration["rule"].startswith("1. Bracket")
    at = {**settings, "epsilon": chosen}  # the same estimate at the chosen ε, asked for directly
    assert result.llc_means == estimate_llc(model, data, params, training_steps=tiny_run.steps, **at).llc_means
    cell = next(c for c in calibration["cells"] if c["epsilon"] == chosen)
    assert cell["llc_mean"] == result.entries[-1].llc_mean  # the calibration checkpoint's cell is its estimate


@needs_compiler("the compiled MLP step")
def test_the_compiled_mlp_step_changes_no_estimate_beyond_float_rounding(tiny_run, monkeypatch):
    """The compiled loss and gradient against the torch closed form, with the same noise: the same
    chains, to float rounding."""
    from grokscope.models.mlp import MLP

    model, data, params = _inputs(tiny_run)
    settings = dict(FAST, n_steps=60)
    compiled = estimate_llc(model, data, params, **settings)
    monkeypatch.setattr(MLP, "compiled_loss_and_grads", lambda self, loss: None)
    closed_form = estimate_llc(model, data, params, **settings)
    for ours, theirs in zip(compiled.entries, closed_form.entries):
        np.testing.assert_allclose(ours.llc_per_chain, theirs.llc_per_chain, rtol=1e-5)


@needs_compiler("the compiled transformer step")
def test_the_compiled_transformer_step_changes_no_estimate_beyond_float_rounding(monkeypatch):
    """The transformer's compiled loss and gradient against autograd through its vmapped forward,
    with the same noise and minibatches: the same chains, to float rounding; alone equals batched."""
    from grokscope.models.transformer import Transformer, TransformerConfig
    from grokscope.config import TaskConfig
    from grokscope.tasks.modular import make_dataset

    model = Transformer(TransformerConfig(d_model=8, n_heads=2, d_mlp=16, attention_rate=0.5), 7)
    params = [Transformer(model.cfg, 7, seed=s).state_dict() for s in range(2)]
    x, y = make_dataset(TaskConfig(p=7, train_frac=0.8), seed=0).all_pairs()
    settings = dict(FAST, n_steps=60, max_steps=60)
    compiled = estimate_llc(model, (x, y), params, **settings)
    alone = estimate_llc(model, (x, y), params[1], checkpoint_ids=[1], **settings)
    assert alone.entries[0].llc_per_chain == compiled.entries[1].llc_per_chain
    monkeypatch.setattr(Transformer, "compiled_loss_and_grads", lambda self, loss: None)
    autograd = estimate_llc(model, (x, y), params, **settings)
    for ours, theirs in zip(compiled.entries, autograd.entries):
        np.testing.assert_allclose(ours.llc_per_chain, theirs.llc_per_chain, rtol=1e-4)


def test_without_the_compiled_code_the_numbers_keep_their_properties(tiny_run, monkeypatch):
    """GROKSCOPE_NATIVE=0 (a machine without a C compiler): torch computes the same noise stream and
    the same step to float rounding, so the estimates agree closely, and a set alone still gets its
    numbers in a batch."""
    from grokscope.llc.sampling.noise import counter_noise_compiled

    model, data, params = _inputs(tiny_run)
    settings = dict(FAST, n_steps=60, max_steps=60)
    before = estimate_llc(model, data, params, **settings)
    monkeypatch.setenv("GROKSCOPE_NATIVE", "0")
    assert not counter_noise_compiled(torch.device("cpu"))
    python_result = estimate_llc(model, data, params, **settings)
    alone = estimate_llc(model, data, params[-1], checkpoint_ids=[len(params) - 1], **settings)
    assert alone.entries[0].llc_per_chain == python_result.entries[-1].llc_per_chain
    np.testing.assert_allclose(before.entries[-1].llc_per_chain, python_result.entries[-1].llc_per_chain, rtol=1e-3)


class MeanDistance:
    """A user's observer: each chain's squared distance from w*, averaged over the steps."""

    name = "distance"

    def make(self, start, stop, n_chains, device):
        return _DistanceRecorder(start, stop, n_chains, device)

    def summarise(self, series):
        return series.mean(0).tolist()


class _DistanceRecorder:
    def __init__(self, start, stop, n_chains, device):
        self.start, self.values = start, torch.empty(stop - start, n_chains, device=device)

    def observe(self, step, state, loss, loss_grad, noise, batch):
        self.values[step - self.start] = sum(((state.w[n] - state.anchor[n]) ** 2).flatten(1).sum(1) for n in state.w)

    def result(self):
        return {"distance": self.values.cpu()}


def test_a_users_observer_reaches_each_entry_and_llc_json_alone_as_batched(tiny_run):
    model, data, params = _inputs(tiny_run)
    settings = dict(FAST, n_steps=50, max_steps=200)
    together = estimate_llc(model, data, params, observers=[MeanDistance()], **settings)
    for k, entry in enumerate(together.entries):
        assert len(entry.observed["distance"]) == FAST["chains"] and all(d > 0 for d in entry.observed["distance"])
        alone = estimate_llc(model, data, params[k], checkpoint_ids=[k], observers=[MeanDistance()], **settings).entries[0]
        assert alone.observed == entry.observed and alone.steps_used == entry.steps_used
    assert json.loads(together.to_json())["checkpoints"][0]["observed"]["distance"] == together.entries[0].observed["distance"]
    with pytest.raises(ConfigError, match="observer name 'losses'"):
        estimate_llc(model, data, params, observers=[type("Clash", (MeanDistance,), {"name": "losses"})()], **settings)
