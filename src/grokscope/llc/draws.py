"""The draws of an estimate for the ecosystem: an arviz ``InferenceData`` per parameter set, and
netCDF files of them (arviz's own on-disk format, one self-describing file per checkpoint that
``arviz.from_netcdf`` reads back; zarr would need a further dependency for no gain at these sizes).

Groups: ``posterior`` holds λ̂ = nβ (L_t − L_n(w*)) and the minibatch loss L_t of every kept step
(after the burn-in, chains that diverged left out), so arviz's ``rhat``/``ess`` of ``llc`` are the
estimate's own ``r_hat``/``ess_bulk``; ``log_likelihood`` holds −ℓ_i(w) of each recorded pair at the
thinned probe steps (cross-entropy is a negative log-likelihood). Draw coordinates are SGLD steps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ConfigError

NEEDS = "the arviz extra: pip install 'grokscope[arviz]'"


def require_arviz():
    """arviz, or a one-line error naming the extra."""
    try:
        import arviz
    except ImportError:
        raise ConfigError(f"draws as InferenceData need {NEEDS}") from None
    return arviz


# `result` below is an LLCResult (llc/result.py), unannotated: its to_arviz() imports this module.


def kept_chains(result, entry: int) -> tuple[slice, np.ndarray]:
    """The columns of parameter set ``entry``'s chains, and which of them did not diverge."""
    chains = result.settings["chains"]
    e = result.entries[entry]
    return slice(entry * chains, (entry + 1) * chains), np.array([v is not None for v in e.llc_per_chain])


def to_inference_data(result, entry: int = 0):
    """Parameter set ``entry``'s kept draws as ``arviz.InferenceData`` (module docstring)."""
    az = require_arviz()
    if not 0 <= entry < len(result.entries):
        raise ConfigError(f"entry {entry}: the result has {len(result.entries)} parameter sets")
    e = result.entries[entry]
    if result.loss_draws is None or e.llc_mean is None:
        raise ConfigError(f"parameter set {entry} has no draws ({e.status}: {e.reason or 'not sampled'})")
    cols, alive = kept_chains(result, entry)
    nbeta = e.settings["nbeta"] if e.settings else result.settings["nbeta"]
    nbeta = nbeta[entry] if isinstance(nbeta, list) else nbeta
    losses = result.loss_draws[e.burn_in : e.steps_used, cols].double().numpy().T[alive]  # [chains, draws]
    steps = np.arange(e.burn_in, e.steps_used)
    attrs = {"checkpoint_id": e.checkpoint_id, "training_step": -1 if e.step is None else e.step, "status": e.status,
             "burn_in": e.burn_in, "nbeta": nbeta, "init_loss": e.init_loss, "diverged_chains": e.diverged_chains}
    groups = {"posterior": az.dict_to_dataset(
        {"llc": nbeta * (losses - e.init_loss), "loss": losses}, coords={"draw": steps}, attrs=attrs)}
    if result.probe_samples:
        every = result.settings["probe_every"]
        rows = [i for i in range(-(-e.burn_in // every), -(-e.steps_used // every))]
        loglik = {name: -t[rows, cols].double().numpy().transpose(1, 0, 2)[alive] for name, t in result.probe_samples.items()}
        groups["log_likelihood"] = az.dict_to_dataset(
            loglik, coords={"draw": np.array(rows) * every, **{f"{name}_pair": np.arange(v.shape[2]) for name, v in loglik.items()}},
            dims={name: [f"{name}_pair"] for name in loglik}, attrs=attrs)
    return az.InferenceData(**groups)


def save_draws(result, folder: Path) -> list[Path]:
    """Each sampled parameter set's InferenceData as ``folder/draws-<training step or id>.nc``
    (written whole: to a temporary name, then renamed)."""
    require_arviz()
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for k, e in enumerate(result.entries):
        if e.llc_mean is None:
            continue
        path = folder / f"draws-{e.step if e.step is not None else e.checkpoint_id}.nc"
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            to_inference_data(result, k).to_netcdf(str(tmp), engine="h5netcdf")
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
        written.append(path)
    return written
