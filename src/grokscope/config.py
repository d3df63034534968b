"""Run configuration: task, model and training settings, presets, and overrides.

Every field is validated before any work starts; a bad value fails with one message naming the
field, the value and what is allowed (see :func:`parse_config`).
"""

from __future__ import annotations

import hashlib
import json
import reprlib
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Union

from pydantic import Field, ValidationError, field_validator, model_validator

from .errors import ConfigError
from .models import MODELS
from .models.mlp import MLPConfig  # noqa: F401  (re-exported)
from .models.transformer import TransformerConfig  # noqa: F401  (re-exported: users import it from here)
from .store import read_text
from .strict import Strict as _Strict


class TaskConfig(_Strict):
    """Modular addition a + b mod p (REFERENCE §1)."""

    p: int = Field(53, ge=5, description="modulus; the task has p*p examples (at least 5: with fewer, chance alone "
                   "reaches the generalisation threshold on the few held-out pairs)")
    train_frac: float = Field(0.95, gt=0.0, lt=1.0, description="fraction of pairs used for training")
    random_labels: bool = Field(False, description="memorisation control: a fixed pseudo-random label per pair")
    split: Literal["seeded", "legacy"] = Field(
        "seeded", description="'seeded': our generator; 'legacy': the original study's set/random.shuffle split"
    )


ModelConfig = Annotated[Union[tuple(config for config, _ in MODELS.values())], Field(discriminator="kind")]


class TrainingConfig(_Strict):
    """Adam (or AdamW) on cross-entropy, minibatches drawn with replacement or the full batch."""

    n_steps: int = Field(1500, ge=1)
    n_checkpoints: int = Field(25, ge=1, description="checkpoints at k * (n_steps // n_checkpoints), plus the final step")
    batch_size: int = Field(128, ge=1)
    lr: float = Field(0.005, gt=0.0)
    optimizer: Literal["adam", "adamw"] = Field("adam", description="adam: L2 in the gradient; adamw: decoupled decay")
    betas: tuple[float, float] = (0.9, 0.999)
    full_batch: bool = Field(False, description="every step uses the whole training set")
    weight_decay: float = Field(0.0002, ge=0.0)
    warmup_steps: int = Field(0, ge=0, description="linear learning-rate warm-up over the first N steps (Nanda et al.: 10)")
    no_weight_decay_steps: int = Field(0, ge=0, description="switch weight decay off for the last N steps")
    eval_every: int = Field(10, ge=1, description="full-batch evaluation interval (and at every checkpoint)")
    seed: int = Field(0, ge=0)
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?)$")

    @model_validator(mode="after")
    def _consistent(self) -> "TrainingConfig":
        if self.n_checkpoints > self.n_steps:
            raise ValueError(f"n_checkpoints={self.n_checkpoints} exceeds n_steps={self.n_steps}")
        if self.warmup_steps > self.n_steps:
            raise ValueError(f"warmup_steps={self.warmup_steps} exceeds n_steps={self.n_steps}")
        if self.no_weight_decay_steps > self.n_steps:
            raise ValueError(f"no_weight_decay_steps={self.no_weight_decay_steps} exceeds n_steps={self.n_steps}")
        return self

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, betas: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError("each beta must lie in [0, 1)")
        return betas

    def checkpoint_steps(self) -> list[int]:
        """Steps at which weights are saved: 0 (initialisation), evenly spaced, and the final step."""
        interval = self.n_steps // self.n_checkpoints
        steps = [k * interval for k in range(self.n_checkpoints)]
        return sorted(set(steps) | {self.n_steps})


def check_device(device: str) -> None:
    """Fail early when a CUDA device is asked for on a machine without one."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r}: no CUDA device is available here; use device=cpu")


class RunConfig(_Strict):
    task: TaskConfig = TaskConfig()
    model: ModelConfig = MLPConfig()
    training: TrainingConfig = TrainingConfig()

    def to_json(self) -> str:
        return json.dumps(self.model_dump(), indent=2, sort_keys=True)

    def hash(self) -> str:
        """A short stable hash of every setting (the run's identity for resume and sweeps). Settings
        added after runs existed are left out at their default, so those runs keep their identity."""
        settings = self.model_dump()
        for section, field, default in HASH_OMITS_DEFAULTS:
            if settings[section].get(field, default) == default:
                settings[section].pop(field, None)
        canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


HASH_OMITS_DEFAULTS = (("training", "warmup_steps", 0), ("model", "equals_token", False))

PRESETS: dict[str, dict[str, Any]] = {
    # REFERENCE §1: the original study's example run.
    "example": {},
    # REFERENCE §1: groks without weight decay.
    "no-weight-decay": {
        "model": {"embed_dim": 16, "hidden_size": 32},
        "training": {"weight_decay": 0.0, "n_steps": 2000, "n_checkpoints": 40},
    },
    # Zhong et al. 2023's setup (p=59, 80% train, full batch, AdamW lr 1e-3, wd 2, betas (0.9, 0.98)),
    # narrowed to d_model=32 so it groks on a 2-core CPU in minutes. α=0 -> Pizza, α=1 -> Clock.
    # Lengths differ (docs/circuits.md, "Cleaner Pizzas"): at 3000 steps two of five α = 0 seeds were
    # unclear or borderline, at 8000 all five read as Pizzas; α = 1 reads Clock on 4 of 4 seeds at
    # 3000 steps but 2 of 4 at 8000, where the logits drift away from a function of a + b − c.
    **{
        name: {
            "task": {"p": 59, "train_frac": 0.8},
            "model": {"kind": "transformer", "d_model": 32, "n_heads": 4, "attention_rate": alpha},
            "training": {
                "optimizer": "adamw", "lr": 1e-3, "weight_decay": 2.0, "betas": [0.9, 0.98],
                "full_batch": True, "n_steps": steps, "n_checkpoints": checkpoints, "eval_every": every,
            },
        }
        for name, alpha, steps, checkpoints, every in (("pizza", 0.0, 8000, 32, 100), ("clock", 1.0, 3000, 30, 50))
    },
    # Nanda et al. 2023's grokking transformer (REFERENCE §10): tokens "a b =", p = 113, 30% of the
    # pairs, full batch, AdamW lr 1e-3, weight decay 1, 10-step warm-up, 40k steps. Hours on a
    # 2-core CPU; training resumes where it stopped (docs/refined.md, "Nanda's transformer").
    "nanda": {
        "task": {"p": 113, "train_frac": 0.3},
        "model": {"kind": "transformer", "d_model": 128, "n_heads": 4, "d_mlp": 512, "attention_rate": 1.0, "equals_token": True},
        "training": {
            "optimizer": "adamw", "lr": 1e-3, "weight_decay": 1.0, "betas": [0.9, 0.98], "warmup_steps": 10,
            "full_batch": True, "n_steps": 40000, "n_checkpoints": 80, "eval_every": 100,
        },
    },
}

SECTIONS = {"task": TaskConfig, "model": tuple(config for config, _ in MODELS.values()), "training": TrainingConfig}


def _fields(section: str) -> set[str]:
    classes = SECTIONS[section] if isinstance(SECTIONS[section], tuple) else (SECTIONS[section],)
    return {f for cls in classes for f in cls.model_fields}


def section_of(key: str) -> tuple[str, str]:
    """Map 'hidden_size' or 'model.hidden_size' to ('model', 'hidden_size')."""
    if "." in key:
        section, field = key.split(".", 1)
        if section in SECTIONS and field in _fields(section):
            return section, field
    else:
        for section in SECTIONS:
            if key in _fields(section):
                return section, key
    allowed = sorted(f for section in SECTIONS for f in _fields(section))
    raise ConfigError(f"unknown config key {key!r}; allowed keys: {', '.join(allowed)}")


_SHORT = reprlib.Repr()  # keyword arguments only from Python 3.12
_SHORT.maxlevel, _SHORT.maxdict, _SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxset = 3, 6, 6, 6, 6
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 60, 60, 40


def short_repr(value: Any) -> str:
    """repr of ``value`` cut to about 80 characters without building the whole (a value can be huge)."""
    shown = _SHORT.repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        # drop the union tag pydantic puts in a model's location ("model.mlp.hidden_size")
        loc = [x for i, x in enumerate(e["loc"]) if not (i == 1 and e["loc"][0] == "model" and x in MODELS)]
        field = ".".join(str(x) for x in loc)
        value = e.get("input")
        message = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            lines.append(f"{field}: unknown key (value {short_repr(value)})")
        elif not field:  # a check across fields: its message names them
            lines.append(message)
        else:
            lines.append(f"{field}={short_repr(value)}: {message}")
    return "invalid config: " + "; ".join(lines)


def parse_config(data: dict[str, Any]) -> RunConfig:
    """Validate a nested dict into a RunConfig, raising ConfigError with a readable message."""
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config: expected a JSON object of task/model/training sections, got {type(data).__name__}")
    model = data.get("model", {})
    if isinstance(model, dict) and "kind" not in model:
        data = {**data, "model": {**model, "kind": "mlp"}}
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err)) from None


def apply_overrides(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Apply flat ('hidden_size') or dotted ('model.hidden_size') overrides to a nested config dict."""
    merged = {section: dict(base.get(section, {})) for section in SECTIONS}
    unknown_sections = set(base) - set(SECTIONS)
    if unknown_sections:
        raise ConfigError(f"unknown config section(s) {sorted(unknown_sections)}; allowed: {sorted(SECTIONS)}")
    for key, value in overrides.items():
        section, field = section_of(key)
        merged[section][field] = value
    return merged


def build_config(
    preset: str | None = "example",
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    seed: int | None = None,
) -> RunConfig:
    """Compose preset <- config file <- ``overrides`` (flat "hidden_size" or dotted "model.hidden_size"
    keys with typed values) <- ``seed``, then validate."""
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; allowed: {', '.join(PRESETS)}")
    data = apply_overrides(PRESETS.get(preset or "example", {}), {})
    if config_file is not None:
        path = Path(config_file)
        if not path.exists():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = json.loads(read_text(path, ConfigError))
        except json.JSONDecodeError as err:
            raise ConfigError(f"config file {path} is not valid JSON: {err}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a JSON object")
        nested = {k: v for k, v in loaded.items() if k in SECTIONS}
        flat = {k: v for k, v in loaded.items() if k not in SECTIONS}
        for section, values in nested.items():
            if not isinstance(values, dict):
                raise ConfigError(f"config file {path}: section {section!r} must be an object")
            flat.update({f"{section}.{k}": v for k, v in values.items()})
        data = apply_overrides(data, flat)
    overrides = dict(overrides or {})
    if seed is not None:
        overrides["training.seed"] = seed
    return parse_config(apply_overrides(data, overrides))
