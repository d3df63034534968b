"""LLC results: per-checkpoint entries that convert to plain JSON, rows, and a figure."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..atomic import json_safe
from .diagnostics.health import status_line


@dataclass
class CheckpointLLC:
    """λ̂ = nβ (E_w[L] − L_n(w*)) for one checkpoint, across its chains (Lau et al. 2023)."""

    checkpoint_id: int
    step: int | None
    llc_mean: float | None
    llc_std: float | None
    llc_sem: float | None
    llc_per_chain: list[float | None]
    init_loss: float
    r_hat: float | None  # rank-normalised split R-hat of the loss traces (Vehtari et al. 2021)
    ess_bulk: float | None
    ess_tail: float | None
    frac_below_init: float | None
    diverged_chains: int
    mala_acceptance: float | None  # minibatch-potential MALA acceptance (noisier than a full-batch one)
    trace_steps: list[int]
    loss_trace: list[list[float | None]]
    reason: str | None = None
    status: str = "ok"  # ok, imprecise, unreliable or none (llc/diagnostics/health.py)
    flags: list[str] = field(default_factory=list)  # the reasons behind the status, one line each
    steps_used: int | None = None  # SGLD steps each chain took (the budget grows until the chains settle)
    burn_in: int | None = None  # steps discarded, chosen from the trace (MSER-5) unless given
    mcse: float | None = None  # Monte-Carlo standard error of λ̂ (batch means, llc/diagnostics/settling.py)
    r_hat_batch: float | None = None  # R-hat of the batch means of the kept draws
    ess_batch: float | None = None  # effective draws by the batch means
    drift: float | None = None  # λ̂ of the second half of the kept draws minus that of the first half
    doubling_change: float | None = None  # λ̂ minus λ̂ of the same chains over the first half of the steps
    gamma_elasticity: float | None = None  # d ln λ̂ / d ln γ from the draws (llc/diagnostics/localisation.py)
    gamma_elasticity_se: float | None = None  # its standard error from the chains' spread
    quadratic_floor: float | None = None  # λ̂ of the Hessian's quadratic part at w* (llc/diagnostics/quadratic.py)
    floor_probe: dict[str, Any] | None = None  # preconditioned chains' verdict on an estimate at its floor (llc/diagnostics/floor_probe.py)
    settings: dict[str, float] | None = None  # this set's ε, γ, nβ, wd when they differ per set
    step_metrics: dict[str, Any] | None = None  # norms of the step's terms per chain (--step-metrics)
    probe_losses: dict[str, Any] | None = None  # mean loss per chain on each probe set
    observed: dict[str, Any] | None = None  # what each user observer keeps (its summarise), by name

    def row(self) -> dict[str, Any]:
        """The scalar fields (and per-set settings), for tables."""
        skip = {"llc_per_chain", "trace_steps", "loss_trace", "settings", "step_metrics", "probe_losses", "observed", "flags", "floor_probe"}
        return {k: v for k, v in asdict(self).items() if k not in skip} | (self.settings or {}) | {"flags": "; ".join(self.flags)}


@dataclass
class LLCResult:
    entries: list[CheckpointLLC]
    settings: dict[str, Any]
    loss_draws: torch.Tensor | None = field(default=None, repr=False)  # [steps, K*C] every chain's minibatch loss at every step
    samples: torch.Tensor | None = field(default=None, repr=False)  # [S, K*C, P] when asked for
    sample_losses: torch.Tensor | None = field(default=None, repr=False)  # [S, K*C]
    probe_samples: dict[str, torch.Tensor] | None = field(default=None, repr=False)  # probe -> [S, K*C, n] per-sample losses

    def to_dict(self) -> dict[str, Any]:
        return {"settings": json_safe(self.settings), "checkpoints": [json_safe(asdict(e)) for e in self.entries]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    def rows(self) -> list[dict[str, Any]]:
        return [json_safe(e.row()) for e in self.entries]

    def part(self, start: int, stop: int, **settings: Any) -> "LLCResult":
        """The result of parameter sets start..stop-1 alone (with ``settings`` added)."""
        chains = self.settings["chains"]
        cols = slice(start * chains, stop * chains)
        return LLCResult(
            self.entries[start:stop],
            {**self.settings, **settings},
            None if self.loss_draws is None else self.loss_draws[:, cols],
            None if self.samples is None else self.samples[:, cols],
            None if self.sample_losses is None else self.sample_losses[:, cols],
            None if self.probe_samples is None else {name: t[:, cols] for name, t in self.probe_samples.items()},
        )

    @property
    def llc_means(self) -> list[float | None]:
        return [e.llc_mean for e in self.entries]

    def status_line(self) -> str:
        """One line for a summary: all ok, or how many estimates are not and why."""
        return status_line([e.status for e in self.entries])

    def to_arviz(self, entry: int = 0):
        """The kept draws of parameter set ``entry`` as an arviz ``InferenceData`` (llc/draws.py):
        λ̂ and loss traces, and per-pair losses where recorded. Needs the ``arviz`` extra."""
        from .draws import to_inference_data

        return to_inference_data(self, entry)

    def plot(self, metrics: list[dict[str, float]] | None = None):
        """λ̂ per checkpoint with ±std error bars; train/test loss on a second axis when given."""
        from .figures import plot_llc

        return plot_llc(self.to_dict(), metrics)


def merge_tensors(parts: list[dict | None], chains: int) -> dict[str, Any]:
    """Every set's per-step losses, samples, their losses and per-sample probe losses, in order, as
    :class:`LLCResult` fields (NaN for sets not sampled, and past the steps a set recorded)."""
    present = [p for p in parts if p]
    if not present:
        return {}

    def stacked(key: str) -> torch.Tensor | None:
        """The sets' tensors [S_k, chains, ...] side by side, each padded with NaN to the longest S
        (sets that ran longer record more probe steps)."""
        if key not in present[0]:
            return None
        length, like = max(p[key].shape[0] for p in present), present[0][key]
        padded = [torch.full((length, chains, *like.shape[2:]), float("nan")) for _ in parts]
        for blank, p in zip(padded, parts):
            if p:
                blank[: p[key].shape[0]] = p[key]
        return torch.cat(padded, dim=1)

    probe_keys = [key for key in present[0] if key.startswith("probe_samples/")]
    probe_samples = {key.split("/", 1)[1]: stacked(key) for key in probe_keys} or None
    return dict(loss_draws=stacked("losses"), samples=stacked("samples"), sample_losses=stacked("sample_losses"),
                probe_samples=probe_samples)
