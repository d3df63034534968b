"""Import a run of the original study's code (flat params JSON + PyTorch state_dict checkpoints).

Checkpoints are read with ``torch.load(..., weights_only=True)`` only: no user pickle is executed.
The original's train/test split is reproduced exactly (``split="legacy"``), so LLC estimates of
imported checkpoints use the data those weights were trained on.
"""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path
from typing import Any

import torch

from .config import RunConfig, parse_config
from .errors import CheckpointError, ConfigError
from .layout import RunPaths
from .models import build_model
from .run import Run, load_run
from .store import (
    RunLock,
    atomic_write_text,
    check_shapes,
    read_text,
    save_tensors,
    write_manifest,
    write_metrics,
)
from .tasks import make_dataset
from .training import metrics_row

FIELD_MAP = {
    "p": ("task", "p"),
    "train_frac": ("task", "train_frac"),
    "use_random_dataset": ("task", "random_labels"),
    "embed_dim": ("model", "embed_dim"),
    "hidden_size": ("model", "hidden_size"),
    "activation": ("model", "activation"),
    "linear_1_tied": ("model", "linear_1_tied"),
    "tie_unembed": ("model", "tie_unembed"),
    "scale_embed": ("model", "scale_embed"),
    "scale_linear_1_factor": ("model", "scale_linear_1"),
    "freeze_middle": ("model", "freeze_middle"),
    "n_batches": ("training", "n_steps"),
    "n_save_model_checkpoints": ("training", "n_checkpoints"),
    "batch_size": ("training", "batch_size"),
    "lr": ("training", "lr"),
    "weight_decay": ("training", "weight_decay"),
    "num_no_weight_decay_steps": ("training", "no_weight_decay_steps"),
    "random_seed": ("training", "seed"),
}
IGNORED_FIELDS = {"run_id", "movie", "magnitude", "ablation_fourier", "do_viz_weights_modes", "device"}


def legacy_config(params: dict[str, Any]) -> RunConfig:
    """Translate the original study's flat experiment dict into a RunConfig (legacy split)."""
    unknown = sorted(set(params) - set(FIELD_MAP) - IGNORED_FIELDS)
    if unknown:
        print(f"import-legacy: ignoring unrecognised fields {unknown}", file=sys.stderr)
    nested: dict[str, dict[str, Any]] = {"task": {"split": "legacy"}, "model": {}, "training": {}}
    for key, (section, field) in FIELD_MAP.items():
        if key in params:
            nested[section][field] = params[key]
    nested["training"].setdefault("weight_decay", 0.0)
    return parse_config(nested)


def legacy_checkpoint_name(params: dict[str, Any], k: int) -> str:
    """File name the original code gave checkpoint ``k``."""
    return (
        f"CHECKPOINT_{k}_P{params['p']}_frac{params['train_frac']}_hid{params['hidden_size']}"
        f"_emb{params['embed_dim']}_tieunembed{bool(params.get('tie_unembed', False))}"
        f"_tielin{bool(params.get('linear_1_tied', False))}_freeze{bool(params.get('freeze_middle', False))}"
        f"_run{params.get('run_id', 0)}.pt"
    )


def _load_legacy_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.exists():
        raise CheckpointError(f"legacy checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"legacy checkpoint {path} holds pickled Python objects, not only tensors; grokscope reads "
                              "plain tensor state_dicts and never runs code stored in a file (re-save it as a state_dict)") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"cannot read legacy checkpoint {path}: {str(err).splitlines()[0]}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"legacy checkpoint {path} is not a state_dict of tensors")
    return state


def import_legacy(params_json: str | Path, checkpoint_dir: str | Path, out_dir: str | Path) -> Run:
    """Convert a legacy run into a grokscope run directory and return it."""
    try:
        params = json.loads(read_text(Path(params_json), ConfigError))
    except json.JSONDecodeError as err:
        raise ConfigError(f"params file {params_json} is not valid JSON: {err}") from None
    if not isinstance(params, dict):
        raise ConfigError(f"params file {params_json} must hold a JSON object, not {type(params).__name__}")
    for required in ("p", "train_frac", "hidden_size", "embed_dim", "n_batches", "n_save_model_checkpoints"):
        if required not in params:
            raise ConfigError(f"params file {params_json} lacks the field {required!r}")
    config = legacy_config(params)
    tc = config.training
    interval = tc.n_steps // tc.n_checkpoints
    model = build_model(config.model, config.task.p, tc.seed)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}

    run_dir = Path(out_dir).resolve()
    if RunPaths(run_dir).config.exists():
        raise ConfigError(f"{run_dir} already holds a run; choose another --out")
    data = make_dataset(config.task, tc.seed)
    states = []
    for k in range(tc.n_checkpoints):
        path = Path(checkpoint_dir) / legacy_checkpoint_name(params, k)
        state = _load_legacy_state_dict(path)
        if config.model.linear_1_tied:  # the original kept an unused left map; R serves both operands
            state = {n: v for n, v in state.items() if not n.startswith("linear1l.")}
        check_shapes(state, expected, str(path))
        states.append((k * interval, state))

    with RunLock(run_dir):
        atomic_write_text(RunPaths(run_dir).config, config.to_json() + "\n")
        rows = []
        for step, state in states:
            model.load_state_dict(state)
            save_tensors(RunPaths(run_dir).checkpoint(step), state, metadata={"step": str(step), "config_hash": config.hash()})
            rows.append(metrics_row(model, data, step))
        write_metrics(run_dir, rows)
        write_manifest(run_dir, config.hash(), complete=True, imported_from=str(Path(params_json).resolve()))
    return load_run(run_dir)
