import random
from hashlib import sha256

import torch

from grokscope.config import TaskConfig
from grokscope.tasks import make_dataset


def test_seeded_split_is_a_partition_with_correct_labels():
    data = make_dataset(TaskConfig(p=13, train_frac=0.7), seed=3)
    x, y = data.all_pairs()
    assert data.n_train == int(0.7 * 169)
    assert len({tuple(r) for r in x.tolist()}) == 169
    assert torch.equal(y, (x[:, 0] + x[:, 1]) % 13)
    again = make_dataset(TaskConfig(p=13, train_frac=0.7), seed=3)
    other = make_dataset(TaskConfig(p=13, train_frac=0.7), seed=4)
    assert torch.equal(data.train_x, again.train_x)
    assert not torch.equal(data.train_x, other.train_x)


def test_legacy_split_follows_the_original_recipe():
    p, frac, seed = 17, 0.8, 7
    # The recipe as the issue states it, written out independently.
    pairs = list(set((a, b) for a in range(p) for b in range(p)))
    indices = list(range(p * p))
    random.seed(seed)
    random.shuffle(indices)
    n_train = int(frac * p * p)
    expected_train = [pairs[i] for i in indices[:n_train]]
    expected_test = [pairs[i] for i in indices[n_train:]]
    data = make_dataset(TaskConfig(p=p, train_frac=frac, split="legacy"), seed=seed)
    assert [tuple(r) for r in data.train_x.tolist()] == expected_train
    assert [tuple(r) for r in data.test_x.tolist()] == expected_test


def test_random_labels_use_the_original_hash():
    p, seed = 11, 5
    data = make_dataset(TaskConfig(p=p, train_frac=0.5, random_labels=True, split="legacy"), seed=seed)
    for (a, b), label in zip(data.train_x.tolist(), data.train_y.tolist()):
        assert label == int(sha256((str(seed) + str(2 * a * p + b)).encode()).hexdigest(), 16) % p
    x, y = data.all_pairs()
    assert (y != (x[:, 0] + x[:, 1]) % p).float().mean() > 0.5
