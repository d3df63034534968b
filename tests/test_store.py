import pytest
import torch

from grokscope import CheckpointError, load_run, train
from grokscope.layout import RunPaths
from grokscope.store import save_tensors


def test_truncated_checkpoint_is_reported_by_path(tmp_path, tiny_config):
    run = train(tiny_config(), tmp_path / "r", progress=False)
    path = RunPaths(run.path).checkpoint(15)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError) as info:
        load_run(run.path).model(15)
    assert str(path) in str(info.value) and "truncated" in str(info.value)


def test_missing_and_mismatched_checkpoints(tmp_path, tiny_config):
    run = train(tiny_config(), tmp_path / "r", progress=False)
    with pytest.raises(CheckpointError, match="no checkpoint at step 7"):
        run.model(7)
    state = run.state_dict(15)
    state["embedding.weight"] = torch.zeros(3, 3)
    save_tensors(RunPaths(run.path).checkpoint(15), state)
    with pytest.raises(CheckpointError, match=r"embedding.weight has shape \(3, 3\)"):
        run.model(15)


def test_not_a_run(tmp_path):
    with pytest.raises(CheckpointError, match="not a grokscope run"):
        load_run(tmp_path)
