import pytest
import torch

from tiny import tiny_config as make_tiny_config


@pytest.fixture(autouse=True)
def _two_threads():
    torch.set_num_threads(2)


@pytest.fixture
def tiny_config():
    """A factory of configs that train in well under a second (tests/tiny.py)."""
    return make_tiny_config


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
