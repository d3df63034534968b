"""Per-sample posterior statistics of any model and data set, from ONE batched sampling run
(REFERENCE §11): for each parameter set, the whole model's chains and each component's
weight-restricted chains are sampled together (``set_masks``), every chain recording the per-sample
losses of the chosen samples at thinned steps. The statistics are in posterior/statistics.py; each
inherits the status of the LLC estimate of the chains it reads."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch
from torch import nn

from ..errors import ConfigError
from ..llc.config import SGLDConfig, sgld_config
from ..llc.estimator import as_param_sets, sample_llc
from ..llc.result import LLCResult
from ..llc.sampling.objective import BatchedObjective
from ..llc.sampling.selection import model_components
from ..llc.tuning.auto import estimate_llc_auto
from ..memory import available_bytes, gigabytes
from . import statistics as stats

WHOLE = "whole"
DRAWS_PER_BLOCK = 100  # per-sample loss records per chain over the first block of n_steps
MIN_DRAWS_PER_BLOCK = 20  # fewer than this after thinning for memory: refused
MEMORY_SHARE = 0.25  # of the memory available, for the recorded per-sample losses

Classes = Mapping[str, tuple[torch.Tensor, Sequence[str]]]  # family -> (class of each sample, class names)


@dataclass
class PosteriorCheckpoint:
    """The statistics of one parameter set (one checkpoint)."""

    checkpoint_id: int
    step: int | None
    status: str  # of the whole model's LLC estimate from the same chains
    flags: list[str]
    llc: float | None
    draws: int  # pooled draws behind the statistics (chains × kept probe steps)
    loss_at_anchor: torch.Tensor = field(repr=False)  # ℓ_i(w*) [n]
    loss_gain: torch.Tensor = field(repr=False)  # E[ℓ_i] − ℓ_i(w*) [n]
    kernel: torch.Tensor = field(repr=False)  # Cov(ℓ_i, ℓ_j) [n, n]
    susceptibility: torch.Tensor = field(repr=False)  # χ [parts, classes] (NaN for a part with no draws)
    susceptibility_mcse: torch.Tensor = field(repr=False)  # its Monte-Carlo error from the chains' spread [parts, classes]
    part_status: list[str] = field(default_factory=list)  # the status of each part's LLC estimate


@dataclass
class PosteriorResult:
    checkpoints: list[PosteriorCheckpoint]
    trained: torch.Tensor  # [n] bool: which recorded samples are training samples
    parts: list[str]  # rows of the susceptibility: the whole model, then each component
    classes: list[str]  # columns of the susceptibility: "family: class"
    class_labels: dict[str, tuple[torch.Tensor, list[str]]]
    nbeta: float
    n_train: int
    settings: dict
    llc: dict[str, LLCResult] = field(repr=False)  # part -> the LLC estimates of its chains

    @property
    def beta(self) -> float:
        """β = nβ / n, the tempering of each sample's loss in the likelihood."""
        return self.nbeta / self.n_train

    def correlation(self, k: int) -> torch.Tensor:
        return stats.correlation(self.checkpoints[k].kernel)

    def influence(self, k: int, on: torch.Tensor | None = None) -> torch.Tensor:
        """BIF of each training sample on the loss of each recorded sample [n_train, n] (or on the
        mean loss of the samples where ``on`` [n] is true: [n_train])."""
        rows = -self.beta * self.checkpoints[k].kernel[self.trained]
        return rows if on is None else rows[:, on].mean(1)


def posterior_statistics(
    model: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor],
    samples: tuple[torch.Tensor, torch.Tensor] | None = None,
    param_sets: Mapping[str, torch.Tensor] | Sequence[Mapping[str, torch.Tensor]] | None = None,
    *,
    trained: torch.Tensor | None = None,
    classes: Classes | None = None,
    components: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
    checkpoint_ids: Sequence[int] | None = None,
    training_steps: Sequence[int] | None = None,
    loss: str = "cross_entropy",
    config: SGLDConfig | None = None,
    draws_per_block: int = DRAWS_PER_BLOCK,
    auto: bool = False,
    progress: bool = False,
    **settings: object,
) -> PosteriorResult:
    """Loss gain, loss kernel, Bayesian influence and susceptibilities at each parameter set.

    ``data`` is the training set the posterior is over; ``samples`` (x, y) the samples whose losses
    are recorded (default: ``data``), with ``trained`` [n] marking those in ``data`` (default: all
    when ``samples`` is ``data``; L_n of the susceptibilities is their mean loss, exact when every
    training sample is recorded). ``classes`` groups the recorded samples for the susceptibilities;
    ``components`` (name -> masks; default the model's ``components()``) are sampled alone for its
    rows. SGLD settings as for :func:`grokscope.llc.estimate_llc` (``epsilon="auto"`` calibrates on
    the whole model at the last set; so does ``auto`` with a ``config``). Per-sample losses are recorded ``draws_per_block`` times per
    chain over the first n_steps, fewer when they would not fit in memory (``settings["probe_every"]``)."""
    epsilon_auto = auto or settings.get("epsilon") == "auto"
    cfg = config if config is not None else sgld_config(**{k: v for k, v in settings.items() if k != "epsilon" or not epsilon_auto})
    param_sets = as_param_sets(model, param_sets)
    ids = list(checkpoint_ids) if checkpoint_ids is not None else list(range(len(param_sets)))
    samples = data if samples is None else samples
    n = int(samples[1].shape[0])
    if trained is None:
        if samples is not data:
            raise ConfigError("trained: say which recorded samples are training samples (a bool tensor, one per sample)")
        trained = torch.ones(n, dtype=torch.bool)
    if trained.shape != (n,) or not trained.any():
        raise ConfigError(f"trained: a bool tensor of {n} entries, at least one true")
    components = dict(model_components(model) if components is None else components)
    parts = [WHOLE, *components]
    families = {name: (labels.long(), list(names)) for name, (labels, names) in (classes or {}).items()}
    for name, (labels, names) in families.items():
        if labels.shape != (n,) or labels.min() < 0 or labels.max() >= len(names):
            raise ConfigError(f"classes[{name!r}]: one class index in [0, {len(names)}) per recorded sample")

    every = _probe_every(cfg, n, len(param_sets) * len(parts), draws_per_block)
    sets = dict(param_sets=param_sets * len(parts), checkpoint_ids=ids * len(parts),
                training_steps=None if training_steps is None else list(training_steps) * len(parts),
                set_masks=[components.get(part) for part in parts for _ in param_sets],
                probes={"samples": samples}, probe_every=every, probe_per_sample=True, progress=progress)
    if epsilon_auto:
        result = estimate_llc_auto(model, data, sets.pop("param_sets"), cfg, loss, calibrate_at=[len(param_sets) - 1], **sets)
    else:
        result = sample_llc(model, data, loss=loss, config=cfg, **sets)
    k_sets = len(param_sets)
    by_part = {part: result.part(i * k_sets, (i + 1) * k_sets, part=part) for i, part in enumerate(parts)}
    nbeta = result.settings["nbeta"]
    anchors = _losses_at_anchor(model, loss, param_sets, samples)
    names = [f"{family}: {name}" for family, (_, class_names) in families.items() for name in class_names]
    checkpoints = [
        _checkpoint(by_part, k, anchors[k], trained, families, nbeta, every) for k in range(k_sets)
    ]
    return PosteriorResult(checkpoints, trained, parts, names, families, nbeta, int(data[1].shape[0]),
                           {**result.settings, "probe_every": every, "draws_per_block": cfg.n_steps // every}, by_part)


def _probe_every(cfg: SGLDConfig, n: int, sets: int, draws_per_block: int) -> int:
    """Steps between per-sample loss records: ``draws_per_block`` per chain over n_steps, thinned
    further until the records of every chain up to the step cap fit in MEMORY_SHARE of memory."""
    every = max(1, math.ceil(cfg.n_steps / draws_per_block))
    budget = MEMORY_SHARE * available_bytes(cfg.device)

    def needed(every: int) -> float:
        return sets * cfg.chains * n * (cfg.step_cap // every + 1) * 4.0

    if needed(every) > budget:
        every = math.ceil(every * needed(every) / budget)
    if cfg.n_steps // every < MIN_DRAWS_PER_BLOCK:
        raise ConfigError(f"the per-sample losses of {n} samples × {cfg.chains} chains × {sets} sets need about "
                          f"{gigabytes(needed(max(1, cfg.n_steps // MIN_DRAWS_PER_BLOCK)))} at {MIN_DRAWS_PER_BLOCK} draws "
                          f"per {cfg.n_steps} steps and {gigabytes(budget)} is available for them; record fewer samples, "
                          "checkpoints or chains, or a lower max_steps")
    return every


@torch.no_grad()
def _losses_at_anchor(model: nn.Module, loss: str, param_sets: list[dict], samples: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """ℓ_i(w*) of every recorded sample at every parameter set [K, n]."""
    objective = BatchedObjective(model, loss)
    stacked = {name: torch.stack([p[name] for p in param_sets]).float() for name, _ in model.named_parameters()}
    return objective.per_sample_losses(stacked, {}, samples[0], samples[1]).double()


def _checkpoint(by_part: dict[str, LLCResult], k: int, at_anchor: torch.Tensor, trained: torch.Tensor,
                families: dict, nbeta: float, every: int) -> PosteriorCheckpoint:
    whole = by_part[WHOLE]
    entry = whole.entries[k]
    draws = _draws(whole, k, every)
    chis, errors, statuses = [], [], []
    for part, result in by_part.items():
        part_draws = _draws(result, k, every)
        statuses.append(result.entries[k].status)
        if part_draws is None or part_draws.shape[0] < 2 or not families:
            chis.append(torch.full((sum(len(names) for _, names in families.values()),), float("nan"), dtype=torch.float64))
            errors.append(chis[-1])
            continue
        chi_of = functools.partial(_susceptibilities, trained=trained, families=families, nbeta=nbeta)
        chis.append(chi_of(part_draws))
        errors.append(stats.chain_mcse([chi_of(chain) for chain in _by_chain(part_draws, result.entries[k])]))
    n = at_anchor.shape[0]
    if draws is None or draws.shape[0] < 2:
        kernel, gain, count = torch.full((n, n), float("nan"), dtype=torch.float64), torch.full((n,), float("nan"), dtype=torch.float64), 0
    else:
        kernel, gain, count = stats.covariance(draws), stats.loss_gain(draws, at_anchor), draws.shape[0]
    return PosteriorCheckpoint(entry.checkpoint_id, entry.step, entry.status, list(entry.flags), entry.llc_mean, count,
                               at_anchor, gain, kernel, torch.stack(chis), torch.stack(errors), statuses)


def _susceptibilities(draws: torch.Tensor, trained: torch.Tensor, families: dict, nbeta: float) -> torch.Tensor:
    """χ of every data class from pooled per-sample loss draws [D, n]; L_n is the training pairs' mean loss."""
    train_loss = draws[:, trained].mean(1)
    subsets = torch.cat([stats.class_means(draws, labels, len(names)) for labels, names in families.values()], 1)
    return stats.susceptibility(train_loss, subsets, train_loss, nbeta)


def _by_chain(draws: torch.Tensor, entry) -> list[torch.Tensor]:
    """Pooled draws [steps × chains, n] (step-major, as stats.pooled) split into each chain's own."""
    chains = sum(v is not None for v in entry.llc_per_chain)
    return list(draws.reshape(-1, chains, draws.shape[-1]).unbind(1))


def _draws(result: LLCResult, k: int, every: int) -> torch.Tensor | None:
    """The kept per-sample loss draws of parameter set k of ``result`` [D, n], or None (not sampled)."""
    entry = result.entries[k]
    if entry.llc_mean is None or result.probe_samples is None:
        return None
    chains = result.settings["chains"]
    recorded = result.probe_samples["samples"][:, k * chains : (k + 1) * chains]
    steps = torch.arange(recorded.shape[0]) * every
    rows = steps < entry.steps_used
    alive = torch.tensor([v is not None for v in entry.llc_per_chain])
    return stats.pooled(recorded[rows], steps[rows], entry.burn_in, alive)
