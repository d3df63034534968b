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


def pytest_terminal_summary(terminalreporter):
    """Say once whether the compiled kernels (grokscope/native.py) were built and tested, or only
    the Python paths (no C compiler, or GROKSCOPE_NATIVE=0)."""
    from grokscope import native

    if not native.enabled():
        said = "not tested: GROKSCOPE_NATIVE=0 (the Python paths alone)"
    elif native.compiler() is None:
        said = "not tested: no C compiler (cc, gcc or clang) here; the Python paths alone"
    else:
        said = f"tested, built with {native.compiler()}"
    terminalreporter.write_line(f"compiled kernels: {said}")
