"""`grokscope posterior RUN`: the per-sample posterior statistics of a run's checkpoints over the p²
pairs of modular addition, in one batched run, into results/posterior.json (the summaries, with
each estimate's status), results/posterior.safetensors (the per-pair arrays) and three figures.

What is kept per checkpoint (the full n × n kernel is not stored: it is 8n² bytes):
- the loss gain of every pair, and its mean over training and held-out pairs;
- the loss kernel's correlation form as block means over classes of (a + b) mod p and of
  (a − b) mod p ([p, p] each), and the share of its off-diagonal variance each explains;
- the BIF of every training pair on the mean held-out loss;
- the susceptibility of the whole model and of each component to each data class (with its
  Monte-Carlo error from the spread of the chains): bins of
  (a + b) mod p and of (a − b) mod p, training vs held-out, and bins of the phase k(a − b) of the
  final embedding's strongest frequency k (folded to [0, p/2], as ``--refine data:frequency``).
"""

from __future__ import annotations

from collections.abc import Mapping

from pathlib import Path

import torch

from ..atomic import atomic_write_json, json_safe
from ..errors import ConfigError
from ..llc.config import SGLDConfig
from ..llc.diagnostics.health import status_line
from ..llc.runs.checkpoints import select_checkpoints
from ..llc.runs.refine import strongest_frequency
from ..plotting import save_figure
from ..run import Run
from ..store import save_tensors
from . import statistics as stats
from .estimate import PosteriorResult, posterior_statistics

DEFAULT_BINS = 8


def pair_classes(p: int, pairs: torch.Tensor, trained: torch.Tensor, bins: int | None, frequency: int) -> dict:
    """The data classes of the susceptibilities: family -> (class of each pair, class names);
    ``bins`` per coordinate (default DEFAULT_BINS, or fewer where p is small)."""
    bins = min(DEFAULT_BINS, p // 2 + 1) if bins is None else bins
    if not 1 <= bins <= p // 2 + 1:
        raise ConfigError(f"--bins must be from 1 to {p // 2 + 1} for p = {p}")
    a, b = pairs[:, 0], pairs[:, 1]
    phase = (frequency * (a - b)).remainder(p)
    coordinates = {"a+b": ((a + b).remainder(p), p), "a-b": ((a - b).remainder(p), p),
                   f"phase {frequency}(a-b)": (torch.minimum(phase, p - phase), p // 2 + 1)}
    out = {}
    for family, (values, count) in coordinates.items():
        edges = [((i * count + bins - 1) // bins, ((i + 1) * count + bins - 1) // bins - 1) for i in range(bins)]
        out[family] = (values * bins // count, [f"{lo}..{hi}" for lo, hi in edges])
    out["split"] = ((~trained).long(), ["trained", "held-out"])
    return out


def run_posterior(run: Run, config: SGLDConfig, checkpoints: str = "all", bins: int | None = None, epsilon_auto: bool = True,
                  progress: bool = True, components: Mapping[str, Mapping[str, torch.Tensor]] | None = None) -> PosteriorResult:
    """The statistics at the chosen checkpoints, over all p² pairs (training pairs first);
    ``components`` as in posterior_statistics (default: the model's own; {}: the whole model only)."""
    steps = select_checkpoints(run, checkpoints)
    data = run.dataset()
    pairs, labels = data.all_pairs()
    trained = torch.arange(labels.shape[0]) < data.n_train
    classes = pair_classes(data.p, pairs, trained, bins, strongest_frequency(run))
    result = posterior_statistics(run.new_model(), (data.train_x, data.train_y), (pairs, labels), [run.state_dict(s) for s in steps],
                                  trained=trained, classes=classes, checkpoint_ids=steps, training_steps=steps,
                                  config=config, auto=epsilon_auto, progress=progress, components=components)
    result.settings["run"] = str(run.path)
    return result


PAIRS = {"all": lambda trained: torch.ones_like(trained), "train": lambda trained: trained, "held-out": lambda trained: ~trained}


def stored_results(result: PosteriorResult, p: int, pairs: torch.Tensor, kernel_pairs: str = "all") -> tuple[dict, dict[str, torch.Tensor]]:
    """results/posterior.json (per checkpoint, the summaries and the status of the chains behind
    them) and results/posterior.safetensors (the per-pair arrays, keyed by step). The loss kernel
    is read over ``kernel_pairs`` (a key of PAIRS); each of its shares comes with its chance level:
    the share of the same classes randomly relabelled (block means of p classes explain about p²/n²
    of any matrix)."""
    chosen = PAIRS[kernel_pairs](result.trained)
    sums, differences = (pairs[chosen, 0] + pairs[chosen, 1]).remainder(p), (pairs[chosen, 0] - pairs[chosen, 1]).remainder(p)
    shuffled = torch.randperm(len(sums), generator=torch.Generator().manual_seed(0))
    tensors = {"pairs": pairs.contiguous(), "trained": result.trained.contiguous(), "steps": torch.tensor([c.step for c in result.checkpoints])}
    rows = []
    for k, c in enumerate(result.checkpoints):
        row = {"step": c.step, "status": c.status, "flags": c.flags, "llc": c.llc, "draws": c.draws}
        corr, influence = result.correlation(k)[chosen][:, chosen], result.influence(k, ~result.trained)
        by_sum, share_sum = stats.block_fit(corr, sums, p)
        by_difference, share_difference = stats.block_fit(corr, differences, p)
        if c.draws:
            row.update(
                loss_gain_trained=float(c.loss_gain[result.trained].mean()), loss_gain_held_out=float(c.loss_gain[~result.trained].mean()),
                kernel_share_sum=share_sum, kernel_share_difference=share_difference,
                kernel_share_chance=stats.block_fit(corr, sums[shuffled], p)[1],
                bif_held_out_mean=float(influence.mean()), bif_held_out_most_negative=float(influence.min()),
                bif_held_out_most_positive=float(influence.max()))
        row["susceptibility"] = {part: {"status": status, **dict(zip(result.classes, values.tolist())),
                                        "mcse": dict(zip(result.classes, errors.tolist()))}
                                 for part, status, values, errors in zip(result.parts, c.part_status, c.susceptibility, c.susceptibility_mcse)}
        rows.append(row)
        tensors |= {f"loss_gain/{c.step}": c.loss_gain.float(), f"bif_held_out/{c.step}": influence.float(),
                    f"kernel_by_sum/{c.step}": by_sum.float(), f"kernel_by_difference/{c.step}": by_difference.float(),
                    f"susceptibility/{c.step}": c.susceptibility.float(), f"susceptibility_mcse/{c.step}": c.susceptibility_mcse.float()}
    statuses = [c.status for c in result.checkpoints]
    keep = ("epsilon", "gamma", "nbeta", "nbeta_convention", "chains", "n_steps", "max_steps", "batch_size", "sampler",
            "probe_every", "draws_per_block", "calibration", "auto", "run")
    parts = [status for c in result.checkpoints for status in c.part_status[1:]]
    stored = {"settings": {k: result.settings.get(k) for k in keep} | {"kernel_pairs": kernel_pairs},
              "status": f"whole model: {status_line(statuses)}" + (f"; components alone: {status_line(parts)}" if parts else ""),
              "parts": result.parts, "classes": result.classes, "beta": result.beta,
              "conventions": "loss gain E[l_i] - l_i(w*); BIF(i -> phi) = -beta Cov(l_i, phi), beta = nbeta/n; "
                             "chi_q = -Cov(L_n, nbeta (L_q - L_n)) under each part's restricted posterior (docs/posterior.md)",
              "checkpoints": rows}
    return stored, tensors


def save_posterior(run: Run, result: PosteriorResult, kernel_pairs: str = "all") -> tuple[dict, list[Path]]:
    """Write posterior.json, posterior.safetensors and the figures (the loss kernel over
    ``kernel_pairs``: all, train or held-out); what posterior.json holds, and the paths written."""
    from .figures import FIGURES

    data = run.dataset()
    pairs = data.all_pairs()[0]
    stored, tensors = stored_results(result, data.p, pairs, kernel_pairs)
    save_tensors(run.paths.posterior_arrays, tensors, metadata={"run": str(run.path)})
    atomic_write_json(run.paths.posterior, json_safe(stored))
    written = [run.paths.posterior, run.paths.posterior_arrays]
    for stem, draw in FIGURES.items():
        save_figure(draw(stored, tensors), run.paths.figure(stem))
        written.append(run.paths.figure(stem))
    return stored, written
