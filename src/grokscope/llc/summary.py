"""What one SGLD run recorded, turned into per-parameter-set results: the post-burn-in draws of
each set's chains become a :class:`CheckpointLLC` with λ̂ = nβ (E_w[L] − L_n(w*)) (Lau et al. 2023),
its chain diagnostics and health flags, and the thinned traces, step metrics and probe losses."""

from __future__ import annotations

import math

import numpy as np
import torch

from .config import SGLDConfig
from .diagnostics import ess_bulk, ess_tail, rhat
from .health import drift, health_flags
from .observers import STEP_METRICS
from .result import CheckpointLLC


def non_finite_entry(cfg: SGLDConfig, checkpoint_id: int, step: int | None, init_loss: float) -> CheckpointLLC:
    where = f"step {step}" if step is not None else f"parameter set {checkpoint_id}"
    return CheckpointLLC(
        checkpoint_id=checkpoint_id, step=step, llc_mean=None, llc_std=None, llc_sem=None, llc_per_chain=[None] * cfg.chains,
        init_loss=init_loss, r_hat=None, ess_bulk=None, ess_tail=None, frac_below_init=None, diverged_chains=0, mala_acceptance=None,
        trace_steps=[], loss_trace=[], reason=f"non-finite weights at {where}: not sampled (the training diverged there)",
    )

def thinned_steps(cfg: SGLDConfig) -> np.ndarray:
    """The steps kept in loss traces and step metrics: at most ``trace_points``, evenly spaced."""
    return np.unique(np.linspace(0, cfg.n_steps - 1, min(cfg.trace_points, cfg.n_steps)).round().astype(int))

def cut_after_divergence(recorded: dict[str, torch.Tensor]) -> None:
    """A diverged chain's draws from its first non-finite loss on become NaN (in place)."""
    losses, first = recorded["losses"], recorded["first_nonfinite_step"]
    losses[torch.arange(losses.shape[0]).unsqueeze(1) >= first.unsqueeze(0)] = float("nan")

def summarise(
    recorded: dict[str, torch.Tensor], k: int, checkpoint_id: int, step: int | None, init_loss: float, nbeta: float,
    cfg: SGLDConfig, set_settings: dict | None, probe_init: dict[str, float],
) -> CheckpointLLC:
    chains = cfg.chains
    cols = slice(k * chains, (k + 1) * chains)
    traces = recorded["losses"][:, cols].T.double().numpy()  # [chains, n_steps]
    diverged = recorded["diverged"][cols].numpy()
    post = traces[~diverged, cfg.burn_in_steps :]
    per_chain = [None if diverged[c] else float(nbeta * (traces[c, cfg.burn_in_steps :].mean() - init_loss)) for c in range(chains)]
    thin = thinned_steps(cfg)
    trace = [[None if not math.isfinite(v) else float(v) for v in traces[c, thin]] for c in range(chains)]
    mala = recorded.get("mala_acceptance")
    mala = None if mala is None or diverged.all() else float(mala[cols][~torch.from_numpy(diverged)].mean())
    base = dict(
        checkpoint_id=checkpoint_id, step=step, init_loss=init_loss, llc_per_chain=per_chain,
        diverged_chains=int(diverged.sum()), trace_steps=thin.tolist(), loss_trace=trace, settings=set_settings,
        step_metrics=_step_metrics(recorded, cols), probe_losses=_probe_losses(recorded, cols, probe_init),
    )
    if post.shape[0] == 0:
        return CheckpointLLC(
            **base, llc_mean=None, llc_std=None, llc_sem=None, r_hat=None, ess_bulk=None, ess_tail=None, frac_below_init=None,
            mala_acceptance=None, reason=f"all {chains} chains diverged (non-finite loss); lower epsilon or raise gamma",
            flags=health_flags(None, int(diverged.sum()), chains),
        )
    values = np.array([v for v in per_chain if v is not None])
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    diagnostics = dict(r_hat=rhat(post), ess_bulk=ess_bulk(post), ess_tail=ess_tail(post),
                       frac_below_init=float((post < init_loss).mean()), mala_acceptance=mala)
    change, change_se = drift(post, nbeta)
    return CheckpointLLC(
        **base, **diagnostics,
        llc_mean=float(values.mean()),
        llc_std=std,
        llc_sem=std / math.sqrt(len(values)),
        drift=change,
        flags=health_flags(float(values.mean()), int(diverged.sum()), chains, **diagnostics, drift_change=change, drift_se=change_se),
    )


def _step_metrics(recorded: dict[str, torch.Tensor], cols: slice) -> dict | None:
    """{"steps": [...], metric: [[value per recorded step] per chain]} for one parameter set."""
    if "step_metrics" not in recorded:
        return None
    values = recorded["step_metrics"][:, :, cols].double()  # [S, metrics, chains]
    out: dict = {"steps": recorded["step_metric_steps"].tolist()}
    for i, name in enumerate(STEP_METRICS):
        out[name] = [[float(v) if math.isfinite(v) else None for v in values[:, i, c].tolist()] for c in range(values.shape[2])]
    return out


def _probe_losses(recorded: dict[str, torch.Tensor], cols: slice, probe_init: dict[str, float]) -> dict | None:
    """{"steps": [...], "init": {probe: L(w*)}, "chains": {probe: [[mean loss per recorded step] per chain]}}."""
    if "probe_steps" not in recorded:
        return None
    chains = {}
    for name in probe_init:
        values = recorded[f"probe_loss/{name}"][:, cols].double()
        chains[name] = [[float(v) if math.isfinite(v) else None for v in values[:, c].tolist()] for c in range(values.shape[1])]
    return {"steps": recorded["probe_steps"].tolist(), "init": probe_init, "chains": chains}
