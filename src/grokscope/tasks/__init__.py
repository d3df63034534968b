"""Tasks the models learn."""

from .modular import ModularDataset, make_dataset

__all__ = ["ModularDataset", "make_dataset"]
