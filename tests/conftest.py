import pytest
import torch

from grokscope import build_config

TINY = {
    "p": 11,
    "train_frac": 0.6,
    "embed_dim": 4,
    "hidden_size": 8,
    "n_steps": 60,
    "n_checkpoints": 4,
    "batch_size": 16,
    "eval_every": 5,
}


@pytest.fixture(autouse=True)
def _two_threads():
    torch.set_num_threads(2)


@pytest.fixture
def tiny_config():
    """A factory of configs that train in well under a second."""

    def make(**overrides):
        sets = {**TINY, **overrides}
        return build_config("example", overrides=sets)

    return make
