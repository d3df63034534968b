import json

import pytest

from grokscope import ConfigError, build_config
from grokscope.cli import parse_set_options
from grokscope.config import PRESETS


def test_presets_match_reference():
    ex = build_config("example")
    assert (ex.task.p, ex.task.train_frac, ex.model.embed_dim, ex.model.hidden_size) == (53, 0.95, 12, 48)
    assert (ex.training.lr, ex.training.batch_size, ex.training.weight_decay) == (0.005, 128, 0.0002)
    assert (ex.training.n_steps, ex.training.n_checkpoints, ex.model.activation) == (1500, 25, "gelu")
    nwd = build_config("no-weight-decay")
    assert (nwd.model.embed_dim, nwd.model.hidden_size, nwd.training.weight_decay) == (16, 32, 0.0)
    assert (nwd.training.n_steps, nwd.training.n_checkpoints) == (2000, 40)
    assert set(PRESETS) == {"example", "no-weight-decay", "pizza", "clock", "nanda"}
    for name, alpha in (("pizza", 0.0), ("clock", 1.0)):
        cfg = build_config(name)
        assert (cfg.task.p, cfg.task.train_frac, cfg.model.kind, cfg.model.attention_rate) == (59, 0.8, "transformer", alpha)
        assert (cfg.training.optimizer, cfg.training.lr, cfg.training.weight_decay) == ("adamw", 1e-3, 2.0)
        assert cfg.training.betas == (0.9, 0.98) and cfg.training.full_batch


def test_nanda_preset_is_the_published_model():
    cfg = build_config("nanda")  # REFERENCE §10
    assert (cfg.task.p, cfg.task.train_frac) == (113, 0.3)
    assert (cfg.model.d_model, cfg.model.n_heads, cfg.model.d_mlp, cfg.model.attention_rate, cfg.model.equals_token) == (128, 4, 512, 1.0, True)
    tc = cfg.training
    assert (tc.optimizer, tc.lr, tc.weight_decay, tc.betas, tc.warmup_steps, tc.full_batch, tc.n_steps) == ("adamw", 1e-3, 1.0, (0.9, 0.98), 10, True, 40000)
    from grokscope.models import build_model

    d, d_mlp, p = 128, 512, 113
    expected = (p + 1) * d + 3 * d + 4 * d * d + 2 * d * d_mlp + d_mlp + d + p * d  # tokens and "=", positions, attention, MLP, unembedding
    assert sum(t.numel() for t in build_model(cfg.model, p).parameters()) == expected  # about 225k, as published


def test_settings_added_later_leave_older_runs_their_identity():
    from grokscope.config import parse_config

    cfg = build_config("pizza")
    older = json.loads(cfg.to_json())  # as a run directory written before these settings existed
    del older["training"]["warmup_steps"], older["model"]["equals_token"]
    assert parse_config(older).hash() == cfg.hash()
    assert build_config("pizza", overrides={"warmup_steps": 10}).hash() != cfg.hash()
    assert build_config("pizza", overrides={"equals_token": True}).hash() != cfg.hash()


def test_checkpoint_schedule_has_init_evenly_spaced_and_final():
    steps = build_config("example").training.checkpoint_steps()
    assert steps[0] == 0 and steps[-1] == 1500 and len(steps) == 26
    assert all(b - a == 60 for a, b in zip(steps[:-1], steps[1:]))


@pytest.mark.parametrize(
    "sets, field",
    [
        (["p=1"], "task.p"),
        (["train_frac=0"], "task.train_frac"),
        (["train_frac=1.0"], "task.train_frac"),
        (["hidden_size=0"], "model.hidden_size"),
        (["embed_dim=-3"], "model.embed_dim"),
        (["batch_size=0"], "training.batch_size"),
        (["activation=tanh"], "model.activation"),
        (["lr=-1"], "training.lr"),
        (["n_checkpoints=50", "n_steps=10"], "n_checkpoints"),
    ],
)
def test_invalid_values_name_field_and_value(sets, field):
    with pytest.raises(ConfigError) as info:
        build_config("example", overrides=parse_set_options(sets))
    message = str(info.value)
    assert field in message
    assert sets[0].split("=", 1)[1] in message


def test_model_kind_fields_are_checked():
    with pytest.raises(ConfigError, match="model.hidden_size: unknown key"):
        build_config("pizza", overrides={"hidden_size": 3})
    with pytest.raises(ConfigError, match="d_model=30 must be divisible by n_heads=4"):
        build_config("clock", overrides={"d_model": 30})
    with pytest.raises(ConfigError, match="model.attention_rate=1.5"):
        build_config("clock", overrides={"attention_rate": 1.5})


def test_unknown_key_and_preset_rejected():
    with pytest.raises(ConfigError, match="unknown config key 'hiden_size'"):
        build_config("example", overrides={"hiden_size": 3})
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        build_config("nope")


def test_config_file_set_and_seed_override_in_order(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"model": {"hidden_size": 7}, "p": 13, "seed": 4}))
    cfg = build_config("no-weight-decay", config_file=path, overrides={"hidden_size": 9}, seed=5)
    assert (cfg.task.p, cfg.model.hidden_size, cfg.model.embed_dim, cfg.training.seed) == (13, 9, 16, 5)


def test_bad_config_file_is_clear(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        build_config("example", config_file=tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        build_config("example", config_file=tmp_path / "bad.json")


def test_hash_changes_with_any_field():
    a = build_config("example")
    assert a.hash() == build_config("example").hash()
    assert a.hash() != build_config("example", seed=1).hash()
