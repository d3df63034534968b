"""What one parameter set's chains recorded, turned into its result: the draws after the burn-in
become a :class:`CheckpointLLC` with λ̂ = nβ (E_w[L] − L_n(w*)) (Lau et al. 2023), its chain
diagnostics, settling checks (llc/diagnostics/settling.py), status and reasons (llc/diagnostics/health.py), and the thinned
traces, step metrics and probe losses."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..config import SGLDConfig
from ..result import CheckpointLLC
from ..sampling.observers import STEP_METRICS
from .convergence import ess_bulk, ess_tail, rhat
from .health import Findings, assess
from .localisation import gamma_elasticity
from .settling import settle


def empty_entry(chains: int, checkpoint_id: int, step: int | None, status: str, reason: str, init_loss: float = float("nan")) -> CheckpointLLC:
    """An entry with no estimate, its status and reason."""
    return CheckpointLLC(
        checkpoint_id=checkpoint_id, step=step, llc_mean=None, llc_std=None, llc_sem=None, llc_per_chain=[None] * chains,
        init_loss=init_loss, r_hat=None, ess_bulk=None, ess_tail=None, frac_below_init=None, diverged_chains=0, mala_acceptance=None,
        trace_steps=[], loss_trace=[], reason=reason, status=status, flags=[reason],
    )


def non_finite_entry(cfg: SGLDConfig, checkpoint_id: int, step: int | None, init_loss: float) -> CheckpointLLC:
    where = f"step {step}" if step is not None else f"parameter set {checkpoint_id}"
    return empty_entry(cfg.chains, checkpoint_id, step, "none",
                       f"non-finite weights at {where}: not sampled (the training diverged there)", init_loss)


def thinned_steps(n_steps: int, points: int) -> np.ndarray:
    """The steps kept in loss traces and step metrics: at most ``points`` of ``n_steps``, evenly spaced."""
    return np.unique(np.linspace(0, n_steps - 1, min(points, n_steps)).round().astype(int))


def cut_after_divergence(losses: torch.Tensor) -> torch.Tensor:
    """Which chains of losses [steps, chains] diverged; their draws from the first non-finite loss
    on become NaN (in place)."""
    bad = ~torch.isfinite(losses)
    first = torch.where(bad.any(0), bad.int().argmax(0), losses.shape[0])
    losses[torch.arange(losses.shape[0]).unsqueeze(1) >= first.unsqueeze(0)] = float("nan")
    return bad.any(0)


def summarise(
    recorded: dict[str, torch.Tensor], checkpoint_id: int, step: int | None, init_loss: float, nbeta: float,
    cfg: SGLDConfig, set_settings: dict | None, probe_init: dict[str, float], quadratic_floor: float | None = None,
    constant_loss: float | None = None,
) -> tuple[CheckpointLLC, Findings]:
    """One parameter set's record (its chains' blocks joined) as an entry, and the findings behind
    its status (whose ``more_steps_help`` says whether its chains should continue).
    ``quadratic_floor``: λ̂ of the Hessian's quadratic part (llc/diagnostics/quadratic.py), if known;
    ``constant_loss``: the loss of the best constant prediction on the set's data, if known."""
    chains = cfg.chains
    diverged = cut_after_divergence(recorded["losses"]).numpy()
    traces = recorded["losses"].T.double().numpy()  # [chains, steps]
    steps_used = traces.shape[1]
    thin = thinned_steps(steps_used, cfg.trace_points)
    trace = [[None if not math.isfinite(v) else float(v) for v in traces[c, thin]] for c in range(chains)]
    mala = recorded.get("mala_acceptance")
    mala = None if mala is None or diverged.all() else float(mala[~torch.from_numpy(diverged)].mean())
    base = dict(
        checkpoint_id=checkpoint_id, step=step, init_loss=init_loss, diverged_chains=int(diverged.sum()), trace_steps=thin.tolist(),
        loss_trace=trace, settings=set_settings, steps_used=steps_used, step_metrics=_step_metrics(recorded), quadratic_floor=quadratic_floor,
        probe_losses=_probe_losses(recorded, probe_init),
    )
    if diverged.all():
        found = assess(None, int(diverged.sum()), chains)
        return CheckpointLLC(
            **base, llc_mean=None, llc_std=None, llc_sem=None, llc_per_chain=[None] * chains, r_hat=None, ess_bulk=None,
            ess_tail=None, frac_below_init=None, mala_acceptance=None, status=found.status, flags=found.reasons,
            reason=f"all {chains} chains diverged (non-finite loss); lower epsilon or raise gamma",
        ), found
    settled = settle(traces[~diverged], init_loss, nbeta, cfg.burn_in)
    post = traces[~diverged, settled.burn_in :]
    values = settled.per_chain
    per_chain = iter(values.tolist())
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    diagnostics = dict(r_hat=rhat(post), ess_bulk=ess_bulk(post), ess_tail=ess_tail(post),
                       frac_below_init=float((post < init_loss).mean()), mala_acceptance=mala)
    elasticity = None
    if "anchor_distance" in recorded:
        distance = recorded["anchor_distance"][:, ~torch.from_numpy(diverged)].double().numpy()
        elasticity = gamma_elasticity(traces[~diverged], distance, recorded["anchor_distance_steps"].numpy(), settled.burn_in,
                                      init_loss, float((set_settings or {}).get("gamma", cfg.gamma)))
    found = assess(float(values.mean()), int(diverged.sum()), chains, **diagnostics, r_hat_batch=settled.r_hat_batch,
                   ess_batch=settled.ess_batch, mcse=settled.mcse, halves=settled.halves, doubling=settled.doubling, chain_spread=std,
                   gamma_elasticity=elasticity, quadratic_floor=quadratic_floor,
                   losses=(init_loss, float(np.nanmean(post)), constant_loss))
    return CheckpointLLC(
        **base, **diagnostics,
        llc_mean=float(values.mean()),
        llc_std=std,
        llc_sem=std / math.sqrt(len(values)),
        llc_per_chain=[None if diverged[c] else next(per_chain) for c in range(chains)],
        burn_in=settled.burn_in,
        mcse=settled.mcse,
        r_hat_batch=settled.r_hat_batch,
        ess_batch=settled.ess_batch,
        drift=settled.halves[0],
        doubling_change=None if settled.doubling is None else settled.doubling[0],
        gamma_elasticity=None if elasticity is None else elasticity[0],
        gamma_elasticity_se=None if elasticity is None else elasticity[1],
        status=found.status,
        flags=found.reasons,
    ), found


def _step_metrics(recorded: dict[str, torch.Tensor]) -> dict | None:
    """{"steps": [...], metric: [[value per recorded step] per chain]} for one parameter set."""
    if "step_metrics" not in recorded:
        return None
    values = recorded["step_metrics"].double()  # [S, metrics, chains]
    out: dict = {"steps": recorded["step_metric_steps"].tolist()}
    for i, name in enumerate(STEP_METRICS):
        out[name] = [[float(v) if math.isfinite(v) else None for v in values[:, i, c].tolist()] for c in range(values.shape[2])]
    return out


def _probe_losses(recorded: dict[str, torch.Tensor], probe_init: dict[str, float]) -> dict | None:
    """{"steps": [...], "init": {probe: L(w*)}, "chains": {probe: [[mean loss per recorded step] per chain]}}."""
    if "probe_steps" not in recorded:
        return None
    chains = {}
    for name in probe_init:
        values = recorded[f"probe_loss/{name}"].double()
        chains[name] = [[float(v) if math.isfinite(v) else None for v in values[:, c].tolist()] for c in range(values.shape[1])]
    return {"steps": recorded["probe_steps"].tolist(), "init": probe_init, "chains": chains}
