"""The LLC estimator's two entry points: :func:`estimate_llc` for any model and parameter sets, and
:func:`run_llc` for the checkpoints of a run. Each samples at the settings given, or first chooses
the step size from the data (``epsilon="auto"``, ``auto_at``: llc/tuning/auto.py)."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from ..errors import ConfigError
from ..run import Run
from .config import SGLDConfig, sgld_config
from .estimator import as_param_sets, sample_llc
from .result import LLCResult
from .runs.checkpoints import run_llc_together, select_checkpoints
from .sampling.objective import LossFn
from .sampling.observers import UserObserver
from .tuning.auto import estimate_llc_auto


def estimate_llc(
    model: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor] | Sequence[tuple[torch.Tensor, torch.Tensor]],
    param_sets: Mapping[str, torch.Tensor] | Sequence[Mapping[str, torch.Tensor]] | None = None,
    loss: str | LossFn = "cross_entropy",
    config: SGLDConfig | None = None,
    checkpoint_ids: Sequence[int] | None = None,
    training_steps: Sequence[int] | None = None,
    progress: bool = False,
    masks: Mapping[str, torch.Tensor] | None = None,
    set_masks: Sequence[Mapping[str, torch.Tensor] | None] | None = None,
    per_set: Sequence[Mapping[str, float]] | None = None,
    probes: Mapping[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
    probe_every: int = 10,
    probe_per_sample: bool = False,
    observers: Sequence[UserObserver] = (),
    **settings: object,
) -> LLCResult:
    """Estimate the LLC at each parameter set in ``param_sets`` (default: the model's own weights).

    ``data`` is the training set (inputs, targets), or one training set per parameter set (of
    equal size: e.g. the seeds of one sweep point, each with its own split); ``loss`` is
    "cross_entropy", "mse" or a callable ``loss(outputs, targets) -> scalar``. SGLD settings come
    from ``config`` or keyword ``settings`` (see :class:`SGLDConfig`; the original study's names
    are accepted). ``checkpoint_ids`` seed each set's chains; ``training_steps`` label each set with
    the training step it was saved at (entries' ``step``, figures). What is sampled: ``params`` (a setting: a regex over parameter names, or a comma
    list of the model's component names such as "head1") or ``masks`` (name -> bool tensor of the
    parameter's shape); everything else stays at w*. ``set_masks`` gives parameter set k masks of
    its own (None: every parameter), e.g. the components of a weight-refined LLC
    (llc/runs/refine.py); a set's chains then draw noise for every tensor any set samples.

    ``epsilon="auto"`` chooses ε from the data first (llc/tuning/auto.py: a calibration at the last
    parameter set by the rule of llc/tuning/calibrate.py; the evidence lands in
    ``settings["calibration"]``).
    ``per_set`` gives parameter set k its own epsilon, gamma, nbeta or weight_decay (e.g. the cells
    of a calibration grid, all at one checkpoint). Each set's chains run ``n_steps``, then continue
    (2n, 4n, ... up to ``max_steps``) until its estimate is settled (``status`` "ok",
    llc/diagnostics/health.py) or more steps cannot help; each entry records ``steps_used``.
    ``probes`` (name -> (x, y)) records every ``probe_every`` steps each chain's mean loss on each probe set (and per-sample losses with
    ``probe_per_sample``). ``observers`` are the user's own measurements (:class:`UserObserver`:
    what each keeps lands in ``entry.observed[name]`` and llc.json). Chain c of parameter set k is seeded by (seed, checkpoint_ids[k], c), so
    a set estimated alone or batched with others gives the same numbers.
    """
    if "steps" in settings:
        raise ConfigError("steps= is now training_steps= (the training step of each parameter set, a label); "
                          "the number of SGLD steps is n_steps")
    options = dict(training_steps=training_steps, masks=masks, per_set=per_set, probes=probes, probe_every=probe_every,
                   probe_per_sample=probe_per_sample, observers=observers)
    if settings.get("epsilon") == "auto":
        cfg = config if config is not None else sgld_config(**{k: v for k, v in settings.items() if k != "epsilon"})
        return estimate_llc_auto(model, data, as_param_sets(model, param_sets), cfg, loss, checkpoint_ids, progress=progress,
                                 **options)
    return sample_llc(model, data, param_sets, loss, config, checkpoint_ids, progress=progress, set_masks=set_masks,
                      **options, **settings)


def run_llc(run: Run, config: SGLDConfig, checkpoints: str = "all", progress: bool = True, auto_at: str | None = None) -> LLCResult:
    """Estimate the LLC of the chosen checkpoints of ``run`` on its own training set, all at once.
    With ``auto_at`` ("last" or checkpoint indices, as ``checkpoints`` takes them) the step size is
    first chosen from the data at those checkpoints (llc/tuning/auto.py)."""
    if auto_at is None:
        return run_llc_together([run], config, checkpoints, progress)[0]
    steps = select_checkpoints(run, checkpoints)
    at = select_checkpoints(run, auto_at, "--auto-at")
    missing = [step for step in at if step not in steps]
    if missing:
        raise ConfigError(f"--auto-at: steps {missing} are not among the estimated checkpoints ({checkpoints})")
    data = run.dataset()
    result = estimate_llc_auto(
        run.new_model(), (data.train_x, data.train_y), [run.state_dict(step) for step in steps], config,
        "cross_entropy", checkpoint_ids=steps, calibrate_at=[steps.index(step) for step in at], progress=progress, training_steps=steps,
    )
    result.settings["run"] = str(run.path)
    return result
