"""When plain SGLD passes no step size because its chains settle too slowly: the same grid, rule and
health checks, on chains preconditioned by the curvature at w* (llc/sampling/preconditioned.py).

Plain SGLD's ε is capped by the stiffest mode, so on a network whose Hessian has null directions
the flat directions may not settle within any budget; preconditioned chains move them with a step
the stiff modes no longer cap. Each ε of the grid (the floor probe's, FLOOR_PROBE_EPSILONS scaled to
this nβ) runs ``chains`` chains, paired across ε (chain c of every ε shares its minibatches and
noise), in blocks of PRECONDITIONED_STEPS, then doubling, until its estimate settles or reaches
PRECONDITIONED_MAX_STEPS; each becomes an entry by the estimator's own summary and health rule
(llc/diagnostics/summary.py) and a cell of llc/tuning/calibrate.py's rule. Only for models whose
Gauss-Newton matrix is computed (llc/diagnostics/quadratic.py): at most QUADRATIC_FLOOR_MAX_PARAMS
parameters, every parameter sampled, a built-in loss, γ > 0 and no weight decay.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from ...thresholds import (
    FLOOR_PROBE_EPSILONS,
    FLOOR_PROBE_ETA,
    FLOOR_PROBE_NBETA,
    PRECONDITIONED_MAX_STEPS,
    PRECONDITIONED_STEPS,
    QUADRATIC_FLOOR_MAX_PARAMS,
)
from ..config import SGLDConfig
from ..diagnostics.floor_probe import probe_seed
from ..diagnostics.quadratic import curvature, quadratic_floor
from ..diagnostics.summary import non_finite_entry, summarise
from ..result import CheckpointLLC, LLCResult
from ..sampling.objective import BatchedObjective
from ..sampling.blocks import run_in_blocks
from ..sampling.preconditioned import PreconditionedChains


def applies(model: nn.Module, base: SGLDConfig, loss: object, masks: Mapping | None) -> bool:
    """Whether a preconditioned grid stands in for plain SGLD's: the sampler is plain SGLD (another,
    named by the user, is kept), the model's curvature is computed and its prior is the stated one."""
    n_params = sum(p.numel() for p in model.parameters())
    return (base.sampler == "sgld" and isinstance(loss, str) and not masks and not base.restrict_to_orth_grad and base.weight_decay == 0
            and base.gamma > 0 and n_params <= QUADRATIC_FLOOR_MAX_PARAMS)


def preconditioned_grid(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], params: Mapping[str, torch.Tensor],
                        base: SGLDConfig, loss: str, nbeta: float, checkpoint_id: int = 0,
                        epsilons: list[float] | None = None) -> list[tuple[dict, CheckpointLLC]] | None:
    """Each ε's (setting, entry), every parameter of ``model`` sampled at ``params``; None when the
    loss has no curvature. ``epsilons`` default to the floor probe's, scaled to ``nbeta``."""
    names = [n for n, _ in model.named_parameters()]
    anchor = {n: params[n].detach().cpu() for n in names}
    x, y = data
    spectrum = curvature(model, anchor, names, x, y, loss)
    if spectrum is None:
        return None
    gamma, chains = base.gamma, base.chains
    epsilons = epsilons or [e * FLOOR_PROBE_NBETA / nbeta for e in FLOOR_PROBE_EPSILONS]
    floor = quadratic_floor(spectrum[0], nbeta, gamma)
    objective = BatchedObjective(model, loss)
    sampler = PreconditionedChains(objective, anchor, {}, x, y, *spectrum, nbeta, gamma, FLOOR_PROBE_ETA,
                                   [e for e in epsilons for _ in range(chains)], base.batch_size,
                                   probe_seed(base.seed, checkpoint_id), slots=[c for _ in epsilons for c in range(chains)])
    constant = objective.loss.constant_loss(y)
    cfg = base.model_copy(update=dict(burn_in=None))
    settings = [dict(epsilon=float(e), nbeta=nbeta, gamma=gamma) for e in epsilons]

    def summarise_cell(i: int, record: dict[str, torch.Tensor]) -> tuple[CheckpointLLC, bool]:
        entry, found = summarise(record, checkpoint_id, None, sampler.init_loss, nbeta, cfg, settings[i], {}, floor, constant)
        return entry, found.more_steps_help

    done = run_in_blocks(range(len(epsilons)), chains, PRECONDITIONED_STEPS, PRECONDITIONED_MAX_STEPS,
                         lambda start, stop: sampler.run(stop - start), summarise_cell, lambda rows, _: sampler.take(rows),
                         "preconditioned steps")
    return [(settings[i], done[i].entry) for i in range(len(epsilons))]


def estimate_preconditioned(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor] | Sequence[tuple[torch.Tensor, torch.Tensor]],
                            param_sets: Sequence[Mapping[str, torch.Tensor]], config: SGLDConfig, loss: str, ids: list[int],
                            labels: Sequence[int] | None, epsilon: float) -> LLCResult:
    """Every parameter set estimated alone by preconditioned chains at ``epsilon``, each with its own
    curvature (``data``: one (x, y) for all, or one per set); a set with non-finite weights is not sampled."""
    shared = isinstance(data, tuple)
    n = int((data if shared else data[0])[1].shape[0])
    nbeta, convention = config.resolve_nbeta(n)
    labels = list(labels) if labels is not None else [None] * len(param_sets)
    entries = []
    for k, params in enumerate(param_sets):
        set_data = data if shared else data[k]
        if not all(bool(torch.isfinite(t).all()) for t in params.values()):
            entries.append(non_finite_entry(config, ids[k], labels[k], float("nan")))
            continue
        set_nbeta = config.resolve_nbeta(int(set_data[1].shape[0]))[0]
        entry = preconditioned_grid(model, set_data, params, config, loss, set_nbeta, ids[k], [epsilon])[0][1]
        entry.step = labels[k]
        entries.append(entry)
    return LLCResult(entries, {**config.model_dump(exclude={"kernel_options"}), "sampler": "preconditioned", "epsilon": epsilon,
                               "nbeta": nbeta, "nbeta_convention": convention, "n_train": n,
                               "max_steps": PRECONDITIONED_MAX_STEPS, "eta": FLOOR_PROBE_ETA})
