import json

import pytest
import torch
from torch import nn

from grokscope import CheckpointError
from grokscope.legacy import import_legacy, legacy_checkpoint_name


class OriginalMLP(nn.Module):
    """The original study's model, written out independently of grokscope's."""

    def __init__(self, p, d, h, tie_unembed, linear_1_tied):
        super().__init__()
        self.embedding = nn.Embedding(p, d)
        self.linear1l = nn.Linear(d, h)
        self.linear1r = nn.Linear(d, h)
        self.linear2 = nn.Linear(h, d, bias=True) if tie_unembed else nn.Linear(h, p, bias=False)
        self.tie_unembed, self.linear_1_tied = tie_unembed, linear_1_tied

    def forward(self, a, b):
        left = self.linear1r if self.linear_1_tied else self.linear1l
        x = nn.functional.gelu(left(self.embedding(a)) + self.linear1r(self.embedding(b)))
        x = self.linear2(x)
        return x @ self.embedding.weight.T if self.tie_unembed else x


def _legacy_run(tmp_path, tie_unembed=False, linear_1_tied=False, n=3):
    params = {
        "p": 13, "train_frac": 0.8, "hidden_size": 10, "lr": 0.01, "batch_size": 32, "embed_dim": 6,
        "tie_unembed": tie_unembed, "weight_decay": 0.0, "n_batches": 30, "n_save_model_checkpoints": n,
        "linear_1_tied": linear_1_tied, "freeze_middle": False, "scale_linear_1_factor": 1.0,
        "scale_embed": 1.0, "use_random_dataset": False, "num_no_weight_decay_steps": 0,
        "activation": "gelu", "run_id": 2, "random_seed": 4, "movie": True, "magnitude": False,
        "ablation_fourier": False, "do_viz_weights_modes": False,
    }
    (tmp_path / "params.json").write_text(json.dumps(params))
    ckpt_dir = tmp_path / "ckpts"
    ckpt_dir.mkdir()
    models = []
    for k in range(n):
        torch.manual_seed(k)
        model = OriginalMLP(13, 6, 10, tie_unembed, linear_1_tied)
        torch.save(model.state_dict(), ckpt_dir / legacy_checkpoint_name(params, k))
        models.append(model)
    return params, ckpt_dir, models


@pytest.mark.parametrize("tie_unembed, linear_1_tied", [(False, False), (True, False), (False, True)])
def test_imported_logits_equal_the_originals(tmp_path, tie_unembed, linear_1_tied):
    params, ckpt_dir, originals = _legacy_run(tmp_path, tie_unembed, linear_1_tied)
    run = import_legacy(tmp_path / "params.json", ckpt_dir, tmp_path / "run")
    assert run.steps == [0, 10, 20]
    assert run.config.task.split == "legacy" and run.config.training.seed == 4
    data = run.dataset()
    x, _ = data.all_pairs()
    for step, original in zip(run.steps, originals):
        ours = run.model(step)
        with torch.no_grad():
            assert torch.allclose(ours(x), original(x[:, 0], x[:, 1]), atol=1e-5, rtol=1e-5)  # float32, different summation order
    assert [int(r["step"]) for r in run.metrics] == [0, 10, 20]


def test_truncated_or_missing_legacy_checkpoint(tmp_path):
    params, ckpt_dir, _ = _legacy_run(tmp_path)
    victim = ckpt_dir / legacy_checkpoint_name(params, 1)
    victim.write_bytes(victim.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="CHECKPOINT_1_"):
        import_legacy(tmp_path / "params.json", ckpt_dir, tmp_path / "run")
    victim.unlink()
    with pytest.raises(CheckpointError, match="not found"):
        import_legacy(tmp_path / "params.json", ckpt_dir, tmp_path / "run")
    assert not (tmp_path / "run" / "config.json").exists()


def test_pickled_objects_are_refused(tmp_path):
    params, ckpt_dir, _ = _legacy_run(tmp_path)
    torch.save({"embedding.weight": torch.zeros(2), "evil": object()}, ckpt_dir / legacy_checkpoint_name(params, 0))
    with pytest.raises(CheckpointError, match="CHECKPOINT_0_"):
        import_legacy(tmp_path / "params.json", ckpt_dir, tmp_path / "run")
