"""estimate_llc: the local learning coefficient of one or many parameter sets, in one batched run.

λ̂(w*) = nβ · ( E_w[L_n(w)] − L_n(w*) )   (Lau et al. 2023, arXiv 2308.12108, eq. 3.3)

E_w is the mean of the post-burn-in minibatch losses along SGLD chains started at w*, and L_n(w*)
is the full-batch training loss. Every chain of every parameter set steps together (sampler.py).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..errors import ConfigError
from .config import SGLDConfig, sgld_config
from .diagnostics import effective_sample_size, split_rhat
from .objective import BatchedObjective, LossFn, check_parameter_sets, select_parameters
from .result import CheckpointLLC, LLCResult
from .sampler import ChainOutput, run_chains
from .sgld import unit_directions
from .tree import Tree, tree_map

FULL_BATCH_CHUNK = 8192  # rows of data per chunk of a full-batch evaluation


def estimate_llc(
    model: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor] | Sequence[tuple[torch.Tensor, torch.Tensor]],
    param_sets: Mapping[str, torch.Tensor] | Sequence[Mapping[str, torch.Tensor]] | None = None,
    loss: str | LossFn = "cross_entropy",
    config: SGLDConfig | None = None,
    checkpoint_ids: Sequence[int] | None = None,
    steps: Sequence[int] | None = None,
    progress: bool = False,
    **settings: object,
) -> LLCResult:
    """Estimate the LLC at each parameter set in ``param_sets`` (default: the model's own weights).

    ``data`` is the training set (inputs, targets), or one training set per parameter set (of
    equal size: e.g. the seeds of one sweep point, each with its own split); ``loss`` is
    "cross_entropy", "mse" or a callable ``loss(outputs, targets) -> scalar``. SGLD settings come
    from ``config`` or keyword ``settings`` (see :class:`SGLDConfig`; the original study's names
    are accepted; ``params`` is a regex choosing which parameters to sample, the rest stay at w*).
    Chain c of parameter set k is seeded by (seed, checkpoint_ids[k], c), so estimating one
    checkpoint alone or batched with others gives the same numbers.
    """
    cfg = config if config is not None else sgld_config(**settings)
    param_sets = _as_param_sets(model, param_sets)
    check_parameter_sets(model, param_sets)
    ids = list(checkpoint_ids) if checkpoint_ids is not None else list(range(len(param_sets)))
    shared_data = isinstance(data, tuple)
    if len(ids) != len(param_sets) or (shared_data and len(set(ids)) != len(ids)):
        raise ConfigError("checkpoint_ids must give one distinct id per parameter set (of the same data)")
    device = torch.device(cfg.device)
    x, y = _stack_data(data, len(param_sets), device)  # [K, n, ...]
    n = int(y.shape[1])
    if cfg.batch_size > n:
        raise ConfigError(f"batch_size={cfg.batch_size} exceeds the {n} training examples")
    nbeta, convention = cfg.resolve_nbeta(n)

    names = [name for name, _ in model.named_parameters()]
    sampled = select_parameters(names, cfg.params)
    objective = BatchedObjective(model, loss)
    stacked = {
        name: torch.stack([p[name] for p in param_sets]).to(device=device, dtype=torch.float32) for name in names
    }
    anchors = {name: stacked[name] for name in sampled}
    fixed = {name: t for name, t in stacked.items() if name not in anchors}
    init_loss, init_grad = _full_batch_loss_and_grad(objective, anchors, fixed, x, y, cfg.restrict_to_orth_grad)

    chains = cfg.chains
    per_chain = partial(tree_map, lambda t: t.repeat_interleave(chains, dim=0))
    keys = [(cfg.seed, "sgld", k, c) for k in ids for c in range(chains)]
    output = run_chains(
        objective,
        per_chain(anchors),
        per_chain(fixed) if fixed else {},
        *(t[0].expand(len(keys), *t.shape[1:]) if shared_data else t.repeat_interleave(chains, dim=0) for t in (x, y)),
        keys,
        cfg,
        nbeta,
        directions=per_chain(unit_directions(init_grad)) if cfg.restrict_to_orth_grad else None,
        progress=progress,
    )
    entries = [
        _summarise(output, k, ids[k], None if steps is None else int(steps[k]), float(init_loss[k]), nbeta, cfg)
        for k in range(len(param_sets))
    ]
    settings_record = {
        **cfg.model_dump(),
        "burn_in_steps": cfg.burn_in_steps,
        "nbeta": nbeta,
        "nbeta_convention": convention,
        "n_train": n,
        "n_sampled_parameters": sum(t[0].numel() for t in anchors.values()),
        "sampled_parameters": list(sampled),
        "weight_decay_convention": "drift += weight_decay * w (devinterp's; the original study used nbeta * weight_decay * w)",
        "package_version": __version__,
        "torch_version": torch.__version__,
    }
    return LLCResult(entries, settings_record, output.samples, output.sample_losses)


def _as_param_sets(model: nn.Module, params: object) -> list[dict[str, torch.Tensor]]:
    if params is None:
        return [{n: p.detach() for n, p in model.named_parameters()}]
    if isinstance(params, Mapping):
        return [dict(params)]
    return [dict(p) for p in params]


def _stack_data(data: object, k: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs [K, n, ...] and targets [K, n, ...] for K parameter sets (a shared set is expanded, not copied)."""
    if isinstance(data, tuple):
        x, y = data
        return x.to(device).expand(k, *x.shape), y.to(device).expand(k, *y.shape)
    sets = list(data)
    if len(sets) != k:
        raise ConfigError(f"data: {len(sets)} training sets for {k} parameter sets")
    if len({tuple(y.shape) for _, y in sets}) != 1:
        raise ConfigError("data: the training sets of the parameter sets must have the same size")
    return torch.stack([x for x, _ in sets]).to(device), torch.stack([y for _, y in sets]).to(device)


def _full_batch_loss_and_grad(
    objective: BatchedObjective, anchors: Tree, fixed: Tree, x: torch.Tensor, y: torch.Tensor, want_grad: bool
) -> tuple[torch.Tensor, Tree | None]:
    """L_n(w*) [K] (and the tree of ∇L_n(w*)) over each set's training data x, y [K, n, ...], in chunks of rows."""
    k, n = y.shape[0], y.shape[1]
    total = torch.zeros(k, dtype=torch.float64)
    grad = tree_map(torch.zeros_like, anchors) if want_grad else None
    for start in range(0, n, FULL_BATCH_CHUNK):
        xb, yb = x[:, start : start + FULL_BATCH_CHUNK], y[:, start : start + FULL_BATCH_CHUNK]
        weight = yb.shape[1] / n
        if want_grad:
            loss, g = objective.losses_and_grads(anchors, fixed, xb, yb)
            grad = tree_map(lambda acc, gi: acc.add_(gi, alpha=weight), grad, g)
        else:
            with torch.no_grad():
                loss = objective.losses(anchors, fixed, xb, yb)
        total += weight * loss.double().cpu()
    return total, grad


def _summarise(output: ChainOutput, k: int, checkpoint_id: int, step: int | None, init_loss: float, nbeta: float, cfg: SGLDConfig) -> CheckpointLLC:
    chains = cfg.chains
    cols = slice(k * chains, (k + 1) * chains)
    traces = output.losses[:, cols].T.double().numpy()  # [chains, n_steps]
    diverged = output.diverged[cols].numpy()
    post = traces[~diverged, cfg.burn_in_steps :]
    per_chain = [None if diverged[c] else float(nbeta * (traces[c, cfg.burn_in_steps :].mean() - init_loss)) for c in range(chains)]
    thin = np.unique(np.linspace(0, cfg.n_steps - 1, min(cfg.trace_points, cfg.n_steps)).round().astype(int))
    trace = [[None if not math.isfinite(v) else float(v) for v in traces[c, thin]] for c in range(chains)]
    mala = None if output.mala_acceptance is None else float(output.mala_acceptance[cols][~torch.from_numpy(diverged)].mean())
    base = dict(
        checkpoint_id=checkpoint_id, step=step, init_loss=init_loss, llc_per_chain=per_chain,
        diverged_chains=int(diverged.sum()), trace_steps=thin.tolist(), loss_trace=trace,
    )
    if post.shape[0] == 0:
        return CheckpointLLC(
            **base, llc_mean=None, llc_std=None, llc_sem=None, r_hat=None, ess=None, frac_below_init=None,
            mala_acceptance=None, reason=f"all {chains} chains diverged (non-finite loss); lower epsilon or raise gamma",
        )
    values = np.array([v for v in per_chain if v is not None])
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return CheckpointLLC(
        **base,
        llc_mean=float(values.mean()),
        llc_std=std,
        llc_sem=std / math.sqrt(len(values)),
        r_hat=split_rhat(post),
        ess=effective_sample_size(post),
        frac_below_init=float((post < init_loss).mean()),
        mala_acceptance=mala,
    )
