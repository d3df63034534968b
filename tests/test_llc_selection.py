"""Which weights a chain samples: regexes, named components (element masks) and user masks."""

import pytest
import torch

from grokscope import ConfigError
from grokscope.config import MLPConfig, TransformerConfig
from grokscope.llc import estimate_llc
from grokscope.llc.sampling.selection import model_components, select
from grokscope.models import MLP, Transformer

P = 7


def _pairs():
    a, b = torch.meshgrid(torch.arange(P), torch.arange(P), indexing="ij")
    x = torch.stack([a.flatten(), b.flatten()], dim=1)
    return x, (x[:, 0] + x[:, 1]) % P


def _transformer(heads=2):
    return Transformer(TransformerConfig(d_model=8, n_heads=heads, d_mlp=16), P, seed=0)


def test_mlp_components_cover_every_parameter_once():
    model = MLP(MLPConfig(embed_dim=4, hidden_size=8), P)
    components = model_components(model)
    assert list(components) == ["embedding", "layer1", "output"]
    covered = [name for masks in components.values() for name in masks]
    assert sorted(covered) == sorted(n for n, _ in model.named_parameters())
    assert set(components["layer1"]) == {"linear1l.weight", "linear1l.bias", "linear1r.weight", "linear1r.bias"}


def test_transformer_heads_partition_the_attention_matrices():
    model = _transformer(heads=4)
    components = model_components(model)
    assert list(components) == ["embed", "head0", "head1", "head2", "head3", "attn", "mlp", "unembed"]
    for name in ("W_QKV", "W_O"):
        heads = torch.stack([components[f"head{h}"][name] for h in range(4)]).int()
        assert torch.equal(heads.sum(0), torch.ones_like(heads[0]))  # disjoint, and together all of attn
        assert torch.equal(components["attn"][name], heads.sum(0).bool())
    # head 1 owns its d_head columns in each of W_Q, W_K, W_V (d = 8, d_head = 2)
    qkv = components["head1"]["W_QKV"]
    assert qkv[0].nonzero().flatten().tolist() == [2, 3, 10, 11, 18, 19]
    assert components["head1"]["W_O"].any(1).nonzero().flatten().tolist() == [2, 3]


def test_a_heads_masks_are_one_computation_in_the_forward_pass():
    # with head 1's rows of W_O zeroed, the output no longer depends on head 1's Q, K, V columns,
    # but still depends on head 0's: the masks of one head are one path through the model
    model = _transformer()
    x, _ = _pairs()
    masks = model_components(model)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model.W_O[masks["head1"]["W_O"]] = 0.0
        before = model(x)
        for head, changes in (("head1", False), ("head0", True)):
            saved = model.W_QKV.clone()
            model.W_QKV[masks[head]["W_QKV"]] = torch.randn(int(masks[head]["W_QKV"].sum()), generator=g)
            assert torch.allclose(model(x), before, atol=1e-6) != changes, head
            model.W_QKV.copy_(saved)


def test_sampling_one_head_moves_only_that_heads_entries():
    model = _transformer()
    data = _pairs()
    result = estimate_llc(model, data, params="head1", epsilon=1e-3, gamma=5.0, n_steps=40, batch_size=16, chains=2, save_samples=3)
    assert result.settings["sampled_parameters"] == ["W_QKV", "W_O"]
    assert result.settings["selection"]["components"] == ["head1"]
    head = model_components(model)["head1"]
    assert result.settings["n_sampled_parameters"] == int(head["W_QKV"].sum() + head["W_O"].sum())
    anchor = torch.cat([model.W_QKV.detach().flatten(), model.W_O.detach().flatten()])
    moving = torch.cat([head["W_QKV"].flatten(), head["W_O"].flatten()])
    drawn = result.samples.reshape(-1, anchor.numel())
    assert torch.equal(drawn[:, ~moving], anchor[~moving].expand(drawn.shape[0], -1))
    assert (drawn[-1, moving] != anchor[moving]).all()


def test_component_lists_and_regexes():
    model = _transformer()
    both = select(model, "head0,head1")
    attn = select(model, "attn")
    assert both.names == attn.names and both.record["n_sampled_elements"] == attn.record["n_sampled_elements"]
    assert not attn.masks  # whole tensors need no mask
    regex = select(model, "^W_")
    assert regex.names == ["W_QKV", "W_O", "W_in", "W_out"] and regex.record["params"] == "^W_"


def test_unknown_component_lists_the_ones_that_exist():
    with pytest.raises(ConfigError, match=r"components are \['embed', 'head0', 'head1', 'attn', 'mlp', 'unembed'\]"):
        select(_transformer(), "head7")
    with pytest.raises(ConfigError, match="not both"):
        select(_transformer(), "attn", {"W_O": torch.ones(8, 8, dtype=torch.bool)})


def test_layers_frozen_in_training_are_not_sampled_by_default():
    model = MLP(MLPConfig(embed_dim=4, hidden_size=8, freeze_middle=True), P)
    selection = select(model)
    assert selection.names == ["embedding.weight", "linear2.weight"]
    assert selection.record["frozen_not_sampled"] == ["linear1l.weight", "linear1l.bias", "linear1r.weight", "linear1r.bias"]
    assert select(model, "layer1").names == ["linear1l.weight", "linear1l.bias", "linear1r.weight", "linear1r.bias"]  # when asked


def test_training_steps_are_labels_not_the_number_of_sgld_steps():
    model = MLP(MLPConfig(embed_dim=4, hidden_size=8), P)
    for wrong in ({"steps": 3000}, {"training_steps": 3000}):
        with pytest.raises(ConfigError, match="the number of SGLD steps is n_steps"):
            estimate_llc(model, _pairs(), n_steps=10, batch_size=8, **wrong)
