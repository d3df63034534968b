"""``estimate_llc(..., epsilon="auto")``: calibrate the step size at chosen parameter sets by the
truth-free rule of llc/tuning/calibrate.py, then estimate every set at the chosen ε.

The evidence (the bracket, the grid with its flags, the choice and why) goes into the result's
``settings["calibration"]``. When the rule finds no step size, nothing is estimated: every entry
has status ``none`` and the rule's reason, never a number that looks like an estimate."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from ...errors import ConfigError
from ...run import Run
from ..config import SGLDConfig
from ..diagnostics.summary import empty_entry, non_finite_entry
from ..estimator import sample_llc
from ..result import LLCResult
from ..runs.checkpoints import run_llc_together, select_checkpoints
from ..sampling.objective import LossFn
from .calibrate import calibrate, calibrate_llc
from .preconditioned import estimate_preconditioned

# The kernel `--auto` uses unless one is named: the more faithful of the two on the ground-truth
# suite with auto settings (docs/validation.md, "Settings chosen by the data").
AUTO_SAMPLER = "sgld"


def estimate_llc_auto(
    model: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor] | Sequence[tuple[torch.Tensor, torch.Tensor]],
    param_sets: Sequence[Mapping[str, torch.Tensor]],
    config: SGLDConfig,
    loss: str | LossFn = "cross_entropy",
    checkpoint_ids: Sequence[int] | None = None,
    calibrate_at: Sequence[int] = (-1,),
    progress: bool = False,
    **estimate_options: object,
) -> LLCResult:
    """Calibrate ε at the parameter sets ``calibrate_at`` (indices; default the last; a set with
    non-finite weights is replaced by the last finite one before it), take the smallest ε chosen
    there (the strictest), and estimate every parameter set with it."""
    ids = list(checkpoint_ids) if checkpoint_ids is not None else list(range(len(param_sets)))
    bad = [i for i in calibrate_at if not -len(param_sets) <= i < len(param_sets)]
    if bad or not calibrate_at:
        raise ConfigError(f"calibrate_at={list(calibrate_at)}: give indices of the {len(param_sets)} parameter sets")
    finite = [all(bool(torch.isfinite(t).all()) for t in p.values()) for p in param_sets]
    at = sorted({_finite_at_or_before(i % len(param_sets), finite) for i in calibrate_at} - {None})
    if not at:
        return no_estimates(data, config, ids, estimate_options.get("training_steps"), finite,
                            "auto: no parameter set at or before the calibration checkpoints has finite weights")
    reports = []
    for index in at:
        set_data = data if isinstance(data, tuple) else list(data)[index]
        report = calibrate_llc(model, set_data, param_sets[index], config, loss=loss, checkpoint_id=ids[index],
                               masks=estimate_options.get("masks"), progress=progress)
        reports.append({"parameter_set": index, "checkpoint_id": ids[index], **report})
    failed = [r for r in reports if r["recommended"]["epsilon"] is None]
    strictest = failed[0] if failed else min(reports, key=lambda r: r["recommended"]["epsilon"])
    chosen = strictest["recommended"]
    samplers = {r["recommended"].get("sampler", config.sampler) for r in reports}
    unsupported = [name for name in ("masks", "set_masks", "per_set", "probes", "observers") if estimate_options.get(name)]
    steps = estimate_options.get("training_steps")
    if failed:
        result = no_estimates(data, config, ids, steps, finite, f"auto: {chosen['why']} (calibration at checkpoint "
                                                                 f"{strictest['checkpoint_id']}; settings.calibration has the grid)")
    elif len(samplers) > 1:
        result = no_estimates(data, config, ids, steps, finite, "auto: the calibration checkpoints chose different samplers "
                                                                 f"({', '.join(sorted(samplers))}); settings.calibration has the grids")
    elif chosen.get("sampler") == "preconditioned" and unsupported:
        result = no_estimates(data, config, ids, steps, finite, "auto: only preconditioned chains settle here, and they do not "
                                                                 f"record {', '.join(unsupported)}; settings.calibration has the grids")
    elif chosen.get("sampler") == "preconditioned":
        result = estimate_preconditioned(model, data, param_sets, config, loss, ids, steps, chosen["epsilon"])
    else:
        result = sample_llc(model, data, param_sets, loss=loss, config=config.model_copy(update=dict(epsilon=chosen["epsilon"])),
                              checkpoint_ids=ids, progress=progress, **estimate_options)
    result.settings["calibration"] = {**strictest, "all": reports if len(reports) > 1 else None}
    result.settings["auto"] = True
    return result


def run_llc_together_auto(runs: list[Run], config: SGLDConfig, checkpoints: str = "all", progress: bool = False) -> list[LLCResult]:
    """:func:`run_llc_together` with each run's ε chosen by the rule at its last checkpoint (a run
    whose calibration passes no step size gets ``none`` entries with the reason)."""
    reports = [calibrate(run, config, "last", progress=progress) for run in runs]
    chosen = [i for i, r in enumerate(reports) if r["recommended"]["epsilon"] is not None]
    plain = [i for i in chosen if reports[i]["recommended"].get("sampler") != "preconditioned"]
    sampled = run_llc_together([runs[i] for i in plain], config, checkpoints, progress,
                               epsilons=[reports[i]["recommended"]["epsilon"] for i in plain]) if plain else []
    results = dict(zip(plain, sampled))
    for i in set(chosen) - set(plain):
        steps = select_checkpoints(runs[i], checkpoints)
        data = runs[i].dataset()
        results[i] = estimate_preconditioned(runs[i].new_model(), (data.train_x, data.train_y), [runs[i].state_dict(s) for s in steps],
                                             config, "cross_entropy", steps, steps, reports[i]["recommended"]["epsilon"])
        results[i].settings["run"] = str(runs[i].path)
    out = []
    for i, (run, report) in enumerate(zip(runs, reports)):
        if i not in results:
            steps = select_checkpoints(run, checkpoints)
            data = run.dataset()
            results[i] = no_estimates((data.train_x, data.train_y), config, steps, steps, [True] * len(steps),
                                      f"auto: {report['recommended']['why']} (calibration at step {report['step']})")
            results[i].settings["run"] = str(run.path)
        results[i].settings.update(calibration=report, auto=True)
        out.append(results[i])
    return out


def _finite_at_or_before(index: int, finite: list[bool]) -> int | None:
    """The parameter set to calibrate at for ``index``: itself, or the last one before it with finite
    weights (a diverged checkpoint has no posterior to calibrate on)."""
    return next((j for j in range(index, -1, -1) if finite[j]), None)


def no_estimates(data, config: SGLDConfig, ids: list[int], steps: Sequence[int] | None, finite: list[bool], reason: str) -> LLCResult:
    """A result whose every entry is ``none``: for ``reason``, or for its non-finite weights (nothing sampled)."""
    n = int((data if isinstance(data, tuple) else list(data)[0])[1].shape[0])
    nbeta, convention = config.resolve_nbeta(n)
    labels = list(steps) if steps is not None else [None] * len(ids)
    entries = [empty_entry(config.chains, k, label, "none", reason) if ok else non_finite_entry(config, k, label, float("nan"))
               for k, label, ok in zip(ids, labels, finite)]
    return LLCResult(entries, {**config.model_dump(exclude={"kernel_options"}), **config.kernel_settings(), "epsilon": None, "nbeta": nbeta, "nbeta_convention": convention, "n_train": n,
                               "max_steps": config.step_cap})
