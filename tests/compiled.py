"""Tests of the compiled kernels run only where they are built."""

import pytest

from grokscope import native


def needs_compiler(what: str):
    """Skip, saying why, where ``what`` is not built: no C compiler, or GROKSCOPE_NATIVE=0."""
    if not native.enabled():
        return pytest.mark.skip(reason=f"GROKSCOPE_NATIVE=0: {what} is not built")
    return pytest.mark.skipif(native.compiler() is None, reason=f"no C compiler (cc, gcc or clang) here: {what} is not built")
