"""The tiny run every test trains: the ``example`` preset cut down to train in well under a second."""

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


def tiny_config(**overrides):
    """The tiny config, with ``overrides`` (flat keys) on top."""
    return build_config("example", overrides={**TINY, **overrides})
