"""Chains started apart (llc/sampling/starts.py): which chains move, how far, where they may not."""

import pytest
import torch

from grokscope import ConfigError
from grokscope.llc import sgld_config
from grokscope.llc.sampling.starts import spread_starts


def _starts(spread=0.2, gamma=4.0, masks=None, keys=None):
    keys = keys or [(0, "sgld", 7, c) for c in range(4)]
    w = {"a": torch.zeros(len(keys), 60, 50), "b": torch.ones(len(keys), 30)}
    return w, spread_starts(w, keys, spread, torch.full((len(keys),), gamma, dtype=torch.float64), masks or {})


def test_every_second_chain_starts_spread_by_spread_over_root_gamma():
    w, moved = _starts()
    for b in (0, 2):
        assert all(torch.equal(moved[n][b], w[n][b]) for n in w)
    for b in (1, 3):
        step = torch.cat([(moved[n][b] - w[n][b]).flatten() for n in w])
        assert abs(step.std().item() - 0.2 / 4.0**0.5) < 0.01 and abs(step.mean().item()) < 0.01
    assert not torch.equal(moved["a"][1], moved["a"][3])  # each chain its own draw
    assert torch.equal(w["a"], torch.zeros(4, 60, 50))  # the input is not changed


def test_a_chains_start_depends_on_its_key_alone():
    keys = [(0, "sgld", 7, 0), (0, "sgld", 7, 1), (0, "sgld", 9, 1)]
    _, together = _starts(keys=keys)
    _, alone = _starts(keys=keys[2:])
    assert torch.equal(together["a"][2], alone["a"][0]) and torch.equal(together["b"][2], alone["b"][0])


@pytest.mark.parametrize("per_chain", [False, True])
def test_masked_entries_start_at_w_star(per_chain):
    mask = torch.rand(60, 50, generator=torch.Generator().manual_seed(0)) > 0.5
    _, moved = _starts(masks={"a": mask.expand(4, 60, 50) if per_chain else mask})
    assert (moved["a"][1][~mask] == 0).all() and (moved["a"][1][mask] != 0).all()
    assert (moved["b"][1] != 1).all()  # a tensor without a mask moves freely


def test_a_spread_start_is_refused_where_it_cannot_hold():
    with pytest.raises(ConfigError, match="restrict_to_orth_grad"):
        sgld_config(start_spread=0.1, restrict_to_orth_grad=True)
    with pytest.raises(ConfigError, match="gamma"):
        sgld_config(start_spread=0.1, gamma=0.0)
