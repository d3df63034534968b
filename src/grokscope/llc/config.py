"""SGLD settings for LLC estimation (REFERENCE §2), with the original study's names as aliases."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from ..config import check_device, format_validation_error
from ..errors import ConfigError
from .sampling.kernels import KERNELS, option_owners

# nβ = size / ln(size), where size is the training-set size n or the minibatch size m
NBETA_CONVENTIONS = {"n/ln n": "n", "m/ln m": "m"}
BUDGET_FACTOR = 8  # the default cap on a chain's steps, in units of n_steps


class SGLDConfig(BaseModel):
    """Settings of the localised, tempered SGLD sampler (Lau et al. 2023, arXiv 2308.12108).

    ``weight_decay`` adds a Gaussian prior term ``wd * w`` to the drift, as devinterp does; the
    original study multiplied it by nβ (its ``weight_decay = x`` is ours ``x * nβ``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)

    sampler: str = Field("sgld", description="the kernel: sgld (default) or rmsprop_sgld (llc/sampling/kernels/; at a small "
                         "rmsprop_eps it reads about a tenth high on networks of known λ: docs/validation.md)")
    kernel_options: dict[str, Any] = Field({}, description="the kernel's own settings, given flat (rmsprop_alpha=0.9): "
                                           "each kernel's Options names them")

    gamma: float = Field(5.0, ge=0.0, validation_alias=AliasChoices("gamma", "localization"))
    # 5e-4, not the original study's 1e-3: on the example preset's final checkpoint λ̂ is flat for
    # ε ≤ 5e-4 and 6% higher at 1e-3 (docs/validation.md, "The modular-addition defaults")
    epsilon: float = Field(5e-4, gt=0.0, validation_alias=AliasChoices("epsilon", "lr"))
    n_steps: int = Field(3000, ge=1, validation_alias=AliasChoices("n_steps", "num_steps"),
                         description="the first block of steps; the chains continue (2n, 4n, ...) until settled or max_steps")
    max_steps: int | None = Field(None, ge=1, description=f"the most steps a chain takes; default {BUDGET_FACTOR} × n_steps "
                                  "(n_steps: a fixed budget)")
    max_seconds: float | None = Field(None, gt=0.0, description="start no further block of steps after this many seconds "
                                      "(then a group's numbers depend on the machine's speed)")
    batch_size: int = Field(64, ge=1, validation_alias=AliasChoices("batch_size", "m"))
    burn_in: int | None = Field(
        None, ge=0, validation_alias=AliasChoices("burn_in", "num_burnin_steps"),
        description="steps discarded before averaging; default: chosen from the trace (MSER-5, llc/diagnostics/settling.py)",
    )
    chains: int = Field(4, ge=1, validation_alias=AliasChoices("chains", "num_chains"))
    nbeta: Literal[tuple(NBETA_CONVENTIONS)] | float = Field("n/ln n", description="n/ln n (default), m/ln m (devinterp's), or a number")
    temp_multiplier: float = Field(1.0, gt=0.0, description="nβ is divided by this")
    n_multiplier: float = Field(1.0, gt=0.0, description="n is replaced by n_multiplier * n")
    restrict_to_orth_grad: bool = False
    start_spread: float = Field(0.0, ge=0.0, description="every second chain starts at w* + start_spread/√γ · N(0, I) "
                                "instead of at w*, so that R-hat sees chains that settled where they began "
                                "(llc/sampling/starts.py); 0: every chain starts at w*")
    weight_decay: float = Field(0.0, ge=0.0)
    quadratic_floor: bool = Field(True, description="compute λ̂'s quadratic floor at w* for models of at most "
                                  "QUADRATIC_FLOOR_MAX_PARAMS sampled parameters (llc/diagnostics/quadratic.py)")
    floor_probe: bool = Field(True, description="an ok estimate at its quadratic floor is checked by chains preconditioned by "
                              "the curvature; a plateau there makes it unreliable (llc/diagnostics/floor_probe.py)")
    params: str | None = Field(None, description="regex over parameter names; only matching ones are sampled")
    seed: int = Field(0, ge=0)
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?)$")
    save_samples: int = Field(0, ge=0, description="parameter snapshots saved per chain after burn-in")
    mala: bool = Field(True, description="report the MALA acceptance of the moves after burn-in (a health check)")
    mala_every: int = Field(20, ge=1, description="measure the MALA acceptance of every k-th move (each costs one extra gradient)")
    step_metrics: bool = Field(False, description="record the norms of each step's terms per chain")
    trace_points: int = Field(200, ge=2, description="loss-trace points kept per chain")

    @model_validator(mode="before")
    @classmethod
    def _gather_kernel_options(cls, data: Any) -> Any:
        """A kernel's settings are given flat, beside the others; they are kept apart."""
        if not isinstance(data, dict):
            return data
        owners = option_owners()
        given = {k: v for k, v in data.items() if k in owners}
        if not given:
            return data
        return {**{k: v for k, v in data.items() if k not in given}, "kernel_options": {**data.get("kernel_options", {}), **given}}

    @model_validator(mode="after")
    def _consistent(self) -> "SGLDConfig":
        if self.sampler not in KERNELS:
            raise ValueError(f"sampler={self.sampler!r} is not one of: {', '.join(KERNELS)}")
        owners = option_owners()
        foreign = {k: owners.get(k) for k in self.kernel_options if owners.get(k) != self.sampler}
        if foreign:
            raise ValueError("; ".join(f"{k} is a setting of {'the ' + owner + ' kernel' if owner else 'no kernel'}, not of {self.sampler}"
                                       for k, owner in foreign.items()))
        try:
            KERNELS[self.sampler].Options(**self.kernel_options)
        except ValidationError as err:
            raise ValueError("; ".join(f"{e['loc'][0]}: {e['msg']}" for e in err.errors())) from None
        if isinstance(self.nbeta, float) and self.nbeta <= 0:
            raise ValueError(f"nbeta={self.nbeta} must be positive")
        if self.warmup_steps >= self.n_steps:
            raise ValueError(f"burn_in={self.burn_in} must be smaller than n_steps={self.n_steps}")
        if self.max_steps is not None and self.max_steps < self.n_steps:
            raise ValueError(f"max_steps={self.max_steps} must be at least n_steps={self.n_steps}")
        if self.start_spread and self.restrict_to_orth_grad:
            raise ValueError("start_spread with restrict_to_orth_grad: a spread start leaves the restricted subspace; use one")
        if self.start_spread and self.gamma == 0:
            raise ValueError("start_spread needs a localisation (gamma > 0): the spread is start_spread/√γ")
        return self

    @property
    def warmup_steps(self) -> int:
        """Where MALA measurements and snapshots start: the burn-in when given, else the first 25%."""
        return self.n_steps // 4 if self.burn_in is None else self.burn_in

    def kernel_settings(self) -> dict[str, Any]:
        """The kernel's own settings, defaults filled in (as llc.json records them)."""
        return KERNELS[self.sampler].Options(**self.kernel_options).model_dump()

    @property
    def step_cap(self) -> int:
        return self.max_steps if self.max_steps is not None else BUDGET_FACTOR * self.n_steps

    def resolve_nbeta(self, n: int) -> tuple[float, str]:
        """The inverse temperature nβ for a training set of n examples, and the convention used."""
        if isinstance(self.nbeta, float):
            value, convention = self.nbeta, "fixed"
        else:
            size = self.n_multiplier * {"n": n, "m": self.batch_size}[NBETA_CONVENTIONS[self.nbeta]]
            if size <= 1:
                raise ConfigError(f"nbeta={self.nbeta!r} is undefined for a size of {size}; give nbeta as a number")
            value, convention = size / math.log(size), self.nbeta
        return value / self.temp_multiplier, convention


def sgld_config(**settings: object) -> SGLDConfig:
    """Build an SGLDConfig, turning validation failures into one readable ConfigError."""
    try:
        config = SGLDConfig.model_validate(settings)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err).replace("invalid config", "invalid SGLD setting")) from None
    check_device(config.device)
    return config
