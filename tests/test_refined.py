import json

import pytest
import torch
from cli_helper import run_cli
from torch import nn

from grokscope import ConfigError, build_config, train
from grokscope.llc import estimate_llc, sgld_config
from grokscope.llc.api import run_llc
from grokscope.llc.runs.refine import TRAINED_LIKE_HELD_OUT, WHOLE, data_subsets, run_refined, strongest_frequency


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    return train(build_config("example"), tmp_path_factory.mktemp("refined") / "example", progress=False)


@pytest.mark.slow
def test_every_component_is_below_the_whole_model_and_whole_is_the_ordinary_estimate(example):
    config = sgld_config(chains=2, n_steps=1000)
    parts = run_refined(example, config, "components", "6,12,-1", progress=False)
    assert list(parts) == [WHOLE, "embedding", "layer1", "output"]
    ordinary = run_llc(example, config, "6,12,-1", progress=False)
    assert [e.llc_per_chain for e in parts[WHOLE].entries] == [e.llc_per_chain for e in ordinary.entries]  # bit for bit
    for name in ("embedding", "layer1", "output"):
        for part, whole in zip(parts[name].entries, parts[WHOLE].entries):
            assert 0 < part.llc_mean < whole.llc_mean + 2 * (whole.llc_std + part.llc_std), (name, part.step)
    # given the ordinary estimate (as a sweep does), the whole model is not sampled again: same parts
    reused = run_refined(example, config, "components", "6,12,-1", progress=False, whole=ordinary)
    assert list(reused) == list(parts)
    for name in parts:
        assert [e.llc_per_chain for e in reused[name].entries] == [e.llc_per_chain for e in parts[name].entries], name
        # the selection record lists the batched run's sets, which now lack the whole model's
        without_selection = [{k: v for k, v in r[name].settings.items() if k != "selection"} for r in (reused, parts)]
        assert without_selection[0] == without_selection[1], name


class TwoParts(nn.Module):
    """y = a·x; b is a parameter the loss never reads."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
        self.b = nn.Parameter(torch.tensor([0.3, 0.7]))

    def forward(self, x):
        return x @ self.a.unsqueeze(-1)

    def components(self):
        return {"a": {"a": torch.ones(3, dtype=torch.bool)}, "b": {"b": torch.ones(2, dtype=torch.bool)}}


@pytest.mark.slow
def test_a_component_the_loss_does_not_read_has_zero_llc():
    model = TwoParts()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 3, generator=g)
    y = x @ model.a.detach().unsqueeze(-1) + 0.1 * torch.randn(400, 1, generator=g)
    params = {n: p.detach() for n, p in model.named_parameters()}
    comps = model.components()
    result = estimate_llc(model, (x, y), [params] * 3, loss="mse", set_masks=[None, comps["a"], comps["b"]],
                          checkpoint_ids=[0, 0, 0], epsilon=1e-4, gamma=10.0, n_steps=2000, batch_size=100, chains=4)
    whole, a, b = result.entries
    assert a.llc_mean > 0.5  # a regular 3-parameter model: λ = 3/2
    assert abs(b.llc_mean) < 0.05 * a.llc_mean
    assert abs(whole.llc_mean - a.llc_mean) < 0.3 * a.llc_mean


def test_set_masks_are_checked_before_sampling():
    model = TwoParts()
    params = {n: p.detach() for n, p in model.named_parameters()}
    data = (torch.randn(50, 3), torch.randn(50, 1))
    with pytest.raises(ConfigError, match=r"set_masks\[1\]: .*shape"):
        estimate_llc(model, data, [params, params], loss="mse", set_masks=[None, {"a": torch.ones(2, dtype=torch.bool)}],
                     checkpoint_ids=[0, 0], n_steps=10, batch_size=10)
    with pytest.raises(ConfigError, match="not give params"):
        estimate_llc(model, data, [params], loss="mse", set_masks=[None], params="a", n_steps=10, batch_size=10)


def test_cli_refine_writes_json_and_figure_and_refuses_auto(example):
    done = run_cli("llc", example.path, "--refine", "components", "--checkpoints", "-1", "--steps", "300", "--chains", "2")
    assert done.returncode == 0, done.stderr
    refined = json.loads((example.path / "results" / "llc_refined.json").read_text())
    assert list(refined["components"]["parts"]) == [WHOLE, "embedding", "layer1", "output"]
    assert all(len(entries) == 1 for entries in refined["components"]["parts"].values())
    assert (example.path / "figures" / "llc_refined_components.png").read_bytes().startswith(b"\x89PNG")
    refused = run_cli("llc", example.path, "--refine", "components", "--auto")
    assert refused.returncode != 0 and "--refine components" in refused.stderr and "Traceback" not in refused.stderr
    for bad in ("data", "data:difference:x", "data:difference:2:3", "weights"):
        refused = run_cli("llc", example.path, "--refine", bad, "--steps", "10")
        assert refused.returncode != 0 and "--refine" in refused.stderr and "Traceback" not in refused.stderr, bad


def test_data_refined_on_the_training_set_is_the_ordinary_estimate(example):
    config = sgld_config(chains=2, n_steps=300)
    parts = run_refined(example, config, "data:trained", "-1", progress=False)
    ordinary = run_llc(example, config, "-1", progress=False)
    assert [e.llc_per_chain for e in parts["trained"].entries] == [e.llc_per_chain for e in ordinary.entries]  # same numbers
    held_out = example.dataset().test_y.shape[0]
    assert parts["held-out"].settings["n_pairs"] == parts[TRAINED_LIKE_HELD_OUT].settings["n_pairs"] == held_out
    assert parts["trained"].settings["nbeta"] != parts["held-out"].settings["nbeta"]  # nβ from each subset's size
    assert parts[TRAINED_LIKE_HELD_OUT].settings["nbeta"] == parts["held-out"].settings["nbeta"]  # the comparison at one nβ
    subset = data_subsets(example.dataset(), example.config.training.seed, "data:trained", 8)[TRAINED_LIKE_HELD_OUT][0]
    trained = set(map(tuple, example.dataset().train_x.tolist()))
    assert len(set(map(tuple, subset.tolist()))) == held_out and set(map(tuple, subset.tolist())) <= trained  # distinct training pairs


@pytest.mark.slow
def test_difference_bins_partition_every_pair_and_run_batched(example):
    subsets = data_subsets(example.dataset(), example.config.training.seed, "data:difference:5", batch_size=64)
    p = example.config.task.p
    sizes = {int(y.shape[0]) for _, y in subsets.values()}
    assert len(subsets) == 5 and len(sizes) == 1 and p * (p // 5) <= 5 * sizes.pop() <= p * p  # equal sizes, nearly every pair
    for x, y in subsets.values():
        assert torch.equal(y, (x[:, 0] + x[:, 1]) % p) and len(set(map(tuple, x.tolist()))) == len(x)  # distinct real pairs
        differences = set(((x[:, 0] - x[:, 1]) % p).tolist())
        assert max(differences) - min(differences) == len(differences) - 1  # a contiguous run of differences
    for spec in ("data:trained", "data:difference:5", "data:frequency:3"):
        done = run_cli("llc", example.path, "--refine", spec, "--checkpoints", "-1", "--steps", "200", "--chains", "2")
        assert done.returncode == 0, done.stderr
    stored = json.loads((example.path / "results" / "llc_refined.json").read_text())
    assert "data:trained" in stored and list(stored["data:difference:5"]["parts"]) == list(subsets)  # kept side by side
    assert (example.path / "figures" / "llc_refined_data_difference.png").exists()
    k = strongest_frequency(example)
    assert list(stored["data:frequency:3"]["parts"]) == [f"{k}(a-b) folded in {r}" for r in ("0..8", "9..17", "18..26")]


def test_frequency_bins_group_pairs_by_the_phase_of_a_key_frequency(example):
    data, p, k = example.dataset(), example.config.task.p, 4
    subsets = data_subsets(data, 0, "data:frequency:3", batch_size=64, frequency=k)
    amplitude = []  # a Pizza's |cos(πk(a − b)/p)|: falls from bin to bin
    for x, y in subsets.values():
        assert torch.equal(y, (x[:, 0] + x[:, 1]) % p)
        phase = (k * (x[:, 0] - x[:, 1])).remainder(p)
        amplitude.append(torch.cos(torch.pi * torch.minimum(phase, p - phase) / p).abs())
    assert amplitude[0].min() > amplitude[1].max() and amplitude[1].min() > amplitude[2].max()
    with pytest.raises(ConfigError, match="BINS must be a whole number from 1 to 27"):
        data_subsets(data, 0, "data:frequency:28", batch_size=64)


def test_the_report_names_a_refinement_entry_it_cannot_read(example, tmp_path):
    from grokscope.report import build_run_report

    path = example.path / "results" / "llc_refined.json"
    stored = json.loads(path.read_text()) if path.exists() else {}
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({**stored, "components": {"settings": {}}, "settings": 3}))  # damaged, or from another version
    try:
        html = build_run_report(example.path).read_text()
    finally:
        path.write_text(json.dumps(stored))
    assert "entry &#39;components&#39;" in html and "entry &#39;settings&#39;" in html
