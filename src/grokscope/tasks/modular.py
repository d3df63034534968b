"""Modular addition a + b mod p: all p*p pairs, a seeded train/test split, a random-label control.

Two split modes: ``seeded`` (ours: a torch generator seeded by the run's seed) and ``legacy`` (the
original study's exact split, so imported checkpoints are scored on the data they were trained on).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

import torch

from ..config import TaskConfig
from ..errors import ConfigError


@dataclass(frozen=True)
class ModularDataset:
    """Inputs are (a, b) rows of int64; labels are int64 classes in 0..p-1."""

    p: int
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    @property
    def n_train(self) -> int:
        return int(self.train_y.shape[0])

    def to(self, device: str | torch.device) -> "ModularDataset":
        return ModularDataset(
            self.p, *(t.to(device) for t in (self.train_x, self.train_y, self.test_x, self.test_y))
        )

    def all_pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every pair, training rows first."""
        return torch.cat([self.train_x, self.test_x]), torch.cat([self.train_y, self.test_y])


def random_label(a: int, b: int, p: int, seed: int) -> int:
    """The original study's random-label control: a fixed pseudo-random class per pair."""
    digest = hashlib.sha256((str(seed) + str(2 * a * p + b)).encode()).hexdigest()
    return int(digest, 16) % p


def _legacy_pairs(p: int) -> list[tuple[int, int]]:
    # The original code iterated a Python set of int tuples; CPython's order for these is
    # deterministic (tuple hashes do not depend on PYTHONHASHSEED).
    return list({(a, b) for a in range(p) for b in range(p)})


def make_dataset(task: TaskConfig, seed: int) -> ModularDataset:
    """Build the pairs, labels and the train/test split for ``task`` (REFERENCE §1)."""
    p = task.p
    if task.split == "legacy":
        pairs = _legacy_pairs(p)
        order = list(range(p * p))
        random.Random(seed).shuffle(order)  # same sequence as random.seed(seed); random.shuffle(...)
        order_t = torch.tensor(order, dtype=torch.long)
    else:
        pairs = [(a, b) for a in range(p) for b in range(p)]
        generator = torch.Generator().manual_seed(seed)
        order_t = torch.randperm(p * p, generator=generator)
    if task.random_labels:
        labels = [random_label(a, b, p, seed) for a, b in pairs]
    else:
        labels = [(a + b) % p for a, b in pairs]
    x = torch.tensor(pairs, dtype=torch.long)
    y = torch.tensor(labels, dtype=torch.long)
    n_train = int(task.train_frac * p * p)
    if n_train < 1 or n_train >= p * p:
        raise ConfigError(
            f"train_frac={task.train_frac} with p={p} gives {n_train} training pairs of {p * p}; "
            "both the training and the test set must be non-empty"
        )
    train_idx, test_idx = order_t[:n_train], order_t[n_train:]
    return ModularDataset(p, x[train_idx], y[train_idx], x[test_idx], y[test_idx])
