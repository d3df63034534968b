"""A package's public names loaded on first use (PEP 562), so that importing one of its light
modules does not import torch through the package's ``__init__``."""

from __future__ import annotations

import sys
from importlib import import_module
from typing import Callable


def lazy_names(package: str, owners: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: each name in ``owners`` read from its module
    when first asked for, and listed by ``dir`` beside what the package has loaded."""

    def __getattr__(name: str) -> object:
        if name not in owners:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(f"{package}.{owners[name]}"), name)

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *owners})

    return __getattr__, __dir__
