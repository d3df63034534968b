"""A sweep specification: a base preset, a grid over config fields, and what to run at each point.

    name: sweep-p
    preset: example              # any preset
    set: {n_steps: 1500}         # overrides applied to every point (flat or dotted keys)
    grid:                        # every combination, in this order
      p: [17, 23, 29]
      random_labels: [false, true]
      seed: [0, 1, 2]
    llc: {checkpoints: last, sgld: {chains: 4, n_steps: 2000}}   # none | last | all
    refine: [components, data:difference:8]   # refined LLCs at the same checkpoints (grokscope llc --refine)
    analyses: true               # the final checkpoint's circuit verdict and key frequencies

Everything is validated when the spec is loaded, point by point, before any work starts.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ..config import (
    PRESETS,
    RunConfig,
    build_config,
    format_validation_error,
    section_of,
)
from ..errors import ConfigError
from ..llc.config import SGLDConfig, sgld_config
from ..llc.runs.refine import data_subsets, refinements
from ..store import read_text
from ..tasks import make_dataset
from ..training import shared_settings

MAX_POINTS = 10_000  # a grid larger than this is refused before any point is validated


class LLCPlan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    checkpoints: Literal["none", "last", "all"] = "last"
    sgld: dict[str, Any] = Field(default_factory=dict, description="SGLD settings (see grokscope llc)")

    def config(self) -> SGLDConfig:
        return sgld_config(**self.sgld)


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(pattern=r"^[\w.-]+$")
    preset: str = "example"
    overrides: dict[str, Any] = Field(default_factory=dict, alias="set")
    grid: dict[str, list[Any]]
    llc: LLCPlan = LLCPlan()
    refine: list[str] = Field(default_factory=list, description="refined LLCs per point: components, data:trained, data:difference[:BINS], data:frequency[:BINS]")
    analyses: bool = True
    batch_seeds: bool = Field(True, description="train and sample points that share every shape together")

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str) -> str:
        if value not in PRESETS:
            raise ValueError(f"unknown preset {value!r}; allowed: {', '.join(PRESETS)}")
        return value

    @field_validator("grid")
    @classmethod
    def _grid_lists(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        if not grid:
            raise ValueError("the grid needs at least one field")
        for key, values in grid.items():
            if not values:
                raise ValueError(f"grid.{key} is an empty list")
            if len({json.dumps(v) for v in values}) != len(values):
                raise ValueError(f"grid.{key} repeats a value: {values}")
        points = math.prod(len(values) for values in grid.values())
        if points > MAX_POINTS:
            raise ValueError(f"the grid has {points:,} points, more than the {MAX_POINTS:,} one sweep takes "
                             "(each is a training run); split it into several sweeps or thin the grid")
        return grid

    @field_validator("refine")
    @classmethod
    def _known_refinements(cls, specs: list[str]) -> list[str]:
        try:
            return list(dict.fromkeys(refinements(spec) for spec in specs))
        except ConfigError as err:
            raise ValueError(str(err).replace("--refine=", "refine: ")) from None

    @model_validator(mode="after")
    def _refine_needs_llc(self) -> "SweepSpec":
        if self.refine and self.llc.checkpoints == "none":
            raise ValueError("refine needs llc.checkpoints last or all (refined LLCs are estimated at those checkpoints)")
        return self

    def to_json(self) -> str:
        return json.dumps(self.model_dump(by_alias=True), indent=2)

    def work_hash(self) -> str:
        """Identity of what is done at each point beyond training (LLC plan, analyses)."""
        plan = {"llc": self.llc.checkpoints, "sgld": self.llc.config().model_dump(), "analyses": self.analyses}
        if self.refine:  # absent from older plans, so their finished points stay finished
            plan["refine"] = self.refine
        return hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SweepPoint:
    """One grid point: the values that vary, its full config, and its run directory name."""

    values: dict[str, Any]
    config: RunConfig

    @property
    def name(self) -> str:
        text = (value if isinstance(value, str) else json.dumps(value) for value in self.values.values())
        return "_".join(f"{key}={value}" for key, value in zip(self.values, text)) + "_" + self.config.hash()[:8]


BUILTIN_SPECS: dict[str, dict[str, Any]] = {
    # REFERENCE §1: for networks that generalise the final LLC grows roughly linearly with p, and
    # random labels give higher LLCs. LLC at every checkpoint, for the curve over training. The
    # `example` preset's weight decay (2e-4) leaves p <= 23 memorising after 1500 steps; 1e-3 makes
    # networks generalise across the range (docs/sweeps.md).
    "sweep-p": {
        "name": "sweep-p",
        "preset": "example",
        "set": {"weight_decay": 0.001},
        "grid": {"p": [17, 23, 29, 37, 43, 53], "random_labels": [False, True], "seed": [0, 1, 2]},
        "llc": {"checkpoints": "all", "sgld": {"chains": 4, "n_steps": 2000, "batch_size": 64}},
    },
    "sweep-frac": {
        "name": "sweep-frac",
        "preset": "example",
        "grid": {"train_frac": [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.95], "seed": [0, 1, 2]},
        "llc": {"checkpoints": "last", "sgld": {"chains": 4, "n_steps": 2000, "batch_size": 64}},
    },
    # REFERENCE §8 and the open question: can the LLC tell Pizza from Clock? Zhong et al.'s attention
    # rate α from uniform (Pizza) to softmax (Clock) attention, the `pizza` preset's setup; the final
    # checkpoint's λ̂, wrLLC per component and drLLC per bin of a − b beside the circuit verdict
    # (docs/refined.md, scripts/alpha_phase.py). These transformers (weight decay 2) are sharp: the
    # default ε = 5e-4 diverges, ε ≥ 1e-5 has MALA acceptance ≤ 0.55; 3e-6 is accepted at 0.91.
    "alpha-phase": {
        "name": "alpha-phase",
        "preset": "pizza",
        "grid": {"attention_rate": [0.0, 0.25, 0.5, 0.75, 1.0], "seed": [0, 1, 2, 3]},
        "llc": {"checkpoints": "last", "sgld": {"chains": 4, "n_steps": 1500, "batch_size": 64, "epsilon": 3e-6}},
        "refine": ["components", "data:difference:4"],
    },
}


def parse_spec(data: Any, source: str = "spec") -> SweepSpec:
    """Validate a spec dict, every point's config and the LLC settings, with one readable error."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must hold a mapping (name, preset, set, grid, llc, analyses)")
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err).replace("invalid config", f"invalid sweep {source}")) from None
    for key in [*spec.overrides, *spec.grid]:
        section_of(key)  # an unknown field fails here, naming the allowed ones
    sgld = spec.llc.config()
    for point in sweep_points(spec):
        if spec.llc.checkpoints != "none":
            data = make_dataset(point.config.task, point.config.training.seed)
            if sgld.batch_size > data.n_train:
                raise ConfigError(
                    f"sweep point {point.values}: SGLD batch_size={sgld.batch_size} exceeds its {data.n_train} "
                    "training pairs; lower llc.sgld.batch_size"
                )
            for refinement in (r for r in spec.refine if r.startswith("data:")):
                try:
                    data_subsets(data, point.config.training.seed, refinement, sgld.batch_size)
                except ConfigError as err:
                    raise ConfigError(f"sweep point {point.values}: {err}") from None
    return spec


def load_spec(name_or_path: str | Path) -> SweepSpec:
    """A built-in spec by name (sweep-p, sweep-frac, alpha-phase) or a YAML/JSON file."""
    if str(name_or_path) in BUILTIN_SPECS:
        return parse_spec(BUILTIN_SPECS[str(name_or_path)], f"spec {name_or_path}")
    path = Path(name_or_path)
    if not path.exists():
        raise ConfigError(f"sweep spec not found: {path} (built-in specs: {', '.join(BUILTIN_SPECS)})")
    if path.is_file() and path.stat().st_size > MAX_SPEC_BYTES:
        raise ConfigError(f"sweep spec {path} is {path.stat().st_size} bytes; a spec is at most {MAX_SPEC_BYTES}")
    text = read_text(path, ConfigError)
    kind = "JSON" if path.suffix == ".json" else "YAML"
    try:
        data = json.loads(text) if kind == "JSON" else yaml.load(text, Loader=_SpecLoader)  # noqa: S506 (a safe loader)
    except RecursionError:
        raise ConfigError(f"sweep spec {path} nests deeper than a spec can (at most {MAX_SPEC_DEPTH} levels)") from None
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"sweep spec {path} is not valid {kind}: {str(err)[:300]}") from None
    if _depth(data) > MAX_SPEC_DEPTH:
        raise ConfigError(f"sweep spec {path} nests deeper than a spec can (at most {MAX_SPEC_DEPTH} levels)")
    return parse_spec(data, f"spec {path}")


MAX_SPEC_BYTES = 1 << 20  # a spec is a page of YAML: a megabyte is far beyond any real one
MAX_SPEC_DEPTH = 8  # spec → llc → sgld → value is four levels; lists of lists a few more


class _SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader without anchors and aliases (one alias can stand for gigabytes: the
    "billion laughs") and without nesting past MAX_SPEC_DEPTH."""

    depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.YAMLError(f"anchors and aliases (&, *) are not allowed in a sweep spec (line {event.start_mark.line + 1})")
        self.depth += 1
        if self.depth > MAX_SPEC_DEPTH:
            raise yaml.YAMLError(f"nesting deeper than {MAX_SPEC_DEPTH} levels (line {event.start_mark.line + 1})")
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _depth(data: Any) -> int:
    """How deeply ``data`` nests lists and mappings (iteratively: no recursion limit to hit)."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, (dict, list)):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (value.values() if isinstance(value, dict) else value))
    return deepest


def sweep_points(spec: SweepSpec) -> list[SweepPoint]:
    """Every combination of the grid, in the spec's order, each a validated config."""
    keys = list(spec.grid)
    points = []
    for combo in itertools.product(*(spec.grid[k] for k in keys)):
        values = dict(zip(keys, combo))
        try:
            config = build_config(spec.preset, overrides={**spec.overrides, **values})
        except ConfigError as err:
            raise ConfigError(f"sweep point {values}: {err}") from None
        points.append(SweepPoint(values, config))
    return points


MAX_UNIT_POINTS = 8  # bounds a unit's memory: its SGLD noise blocks grow with the number of runs


def work_units(points: list[SweepPoint], batch_seeds: bool, min_units: int = 1) -> list[list[SweepPoint]]:
    """Groups of points computed together: those that share every shape and setting but the seed
    and the label kind, at most MAX_UNIT_POINTS each (one point per unit when ``batch_seeds`` is
    off), in grid order; the largest are halved until there are ``min_units`` (one per worker), so
    no worker idles. Grouping never changes a point's numbers, only the time."""
    if not batch_seeds:
        return [[point] for point in points]
    groups: dict[str, list[SweepPoint]] = {}
    for point in points:
        groups.setdefault(shared_settings(point.config).hash(), []).append(point)
    units = [group[i : i + MAX_UNIT_POINTS] for group in groups.values() for i in range(0, len(group), MAX_UNIT_POINTS)]
    while len(units) < min_units and max(map(len, units), default=1) > 1:
        i = max(range(len(units)), key=lambda k: len(units[k]))
        half = (len(units[i]) + 1) // 2
        units[i : i + 1] = [units[i][:half], units[i][half:]]
    return units
