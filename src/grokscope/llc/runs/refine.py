"""Refined LLCs over training (Wang et al. 2024, arXiv 2410.02984; REFERENCE §8), each refinement
in ONE batched run of parts × checkpoints × chains:

- weight-refined (``components``): the LLC of each named component of the model, only its entries
  sampled and the rest held at w*;
- data-refined (``data:difference[:BINS]``, ``data:frequency[:BINS]``, ``data:trained``: the
  training pairs, as many of them as there are held-out pairs, and the held-out pairs): the same
  estimator with the loss everywhere (SGLD drift, averaged loss, L(w*)) on a subset q of the pairs
  and nβ from q's size. ``frequency`` bins the pairs by the phase k(a − b) of the final embedding's
  strongest frequency k, folded to [0, p/2]: the pairs where a Pizza's amplitude |cos(πk(a − b)/p)|
  is large come first, those where it vanishes last.

Every part at checkpoint k draws its chains' streams from the keys of the whole-model chains of k
(common random numbers), so the part equal to the ordinary estimate (``whole``, or the ``trained``
subset) gives `grokscope llc`'s numbers bit for bit.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from ...atomic import atomic_write_json, json_safe
from ...errors import ConfigError, GrokscopeError
from ...plotting import save_figure
from ...run import Run
from ...seeding import generator
from ...store import read_json
from ...tasks import ModularDataset
from ...tasks.fourier_basis import mode_magnitudes
from ..config import SGLDConfig
from ..estimator import sample_llc
from ..figures import draw_llc_curve
from ..result import LLCResult
from ..sampling.selection import model_components
from .checkpoints import select_checkpoints

WHOLE = "whole"
TRAINED_LIKE_HELD_OUT = "trained, held-out size"  # the data:trained subset compared with the held-out pairs at their nβ
DEFAULT_BINS = 8  # default number of bins of a data refinement by difference or frequency phase
BINNED = ("difference", "frequency")


def refinements(spec: str) -> str:
    """``spec`` checked and normalised: components | data:trained | data:difference:BINS | data:frequency:BINS."""
    parts = spec.split(":")
    if parts in (["components"], ["data", "trained"]):
        return spec
    if len(parts) == 2 and parts[0] == "data" and parts[1] in BINNED:
        return f"{spec}:{DEFAULT_BINS}"
    if len(parts) == 3 and parts[0] == "data" and parts[1] in BINNED:
        return spec
    raise ConfigError(f"--refine={spec!r}: use components, data:trained, data:difference[:BINS] or data:frequency[:BINS]")


def strongest_frequency(run: Run) -> int:
    """The frequency k ≥ 1 of largest magnitude in the final checkpoint's embedding."""
    embedding = run.model(run.steps[-1]).embedding.weight.detach()
    return int(mode_magnitudes(embedding)[1:].argmax()) + 1


def data_subsets(data: ModularDataset, seed: int, spec: str, batch_size: int, frequency: int = 1) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The named subsets q of pairs a data refinement estimates on, each checked to hold at least
    one minibatch. Bins are cut to the smallest bin's size (a random subset of each, seeded by the
    run's ``seed``): λ̂ scales with nβ at these sizes, so bins of different sizes would differ by
    their nβ alone (docs/refined.md). For the same reason ``data:trained`` holds, beside the
    training and held-out pairs, a random subset of the training pairs of the held-out set's size:
    the comparison at a common nβ. ``frequency`` is the k of ``data:frequency``."""
    if spec == "data:trained":
        n_held_out = int(data.test_y.shape[0])
        rows = torch.randperm(data.n_train, generator=generator(seed, "trained-subset"))[:n_held_out]
        sets = {"trained": (data.train_x, data.train_y), TRAINED_LIKE_HELD_OUT: (data.train_x[rows], data.train_y[rows]),
                "held-out": (data.test_x, data.test_y)}
    else:
        sets = _bins(data, seed, spec, frequency)
    too_small = {name: int(y.shape[0]) for name, (_, y) in sets.items() if y.shape[0] < batch_size}
    if too_small:
        raise ConfigError(f"--refine {spec}: subsets {too_small} have fewer pairs than the minibatch ({batch_size}); "
                          "use fewer bins or a smaller batch size")
    return sets


def _bins(data: ModularDataset, seed: int, spec: str, frequency: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Pairs binned by (a − b) mod p in [0, p), or by k(a − b) mod p folded to [0, p/2], in equal-width
    ranges of whole values, each cut to the smallest bin's size."""
    kind, bins_text = spec.split(":")[1:]
    p = data.p
    values = p if kind == "difference" else p // 2 + 1
    if not bins_text.isdigit() or not 1 <= int(bins_text) <= values:
        raise ConfigError(f"--refine {spec}: BINS must be a whole number from 1 to {values} for p = {p}")
    bins = int(bins_text)
    x, y = data.all_pairs()
    coordinate = (x[:, 0] - x[:, 1]).remainder(p)
    if kind == "frequency":
        coordinate = (coordinate * frequency).remainder(p)
        coordinate = torch.minimum(coordinate, p - coordinate)
    which = coordinate * bins // values
    size = min(int((which == b).sum()) for b in range(bins))
    order = torch.randperm(x.shape[0], generator=generator(seed, f"{kind}-bins"))
    name = "(a-b) mod p" if kind == "difference" else f"{frequency}(a-b) folded"
    out = {}
    for b in range(bins):
        rows = order[which[order] == b][:size]  # a seeded random `size` pairs of the bin: equal sizes, equal nβ
        lo, hi = (b * values + bins - 1) // bins, ((b + 1) * values + bins - 1) // bins - 1
        out[f"{name} in {lo}..{hi}"] = (x[rows], y[rows])
    return out


def run_refined(run: Run, config: SGLDConfig, spec: str, checkpoints: str = "all", progress: bool = True,
                whole: LLCResult | None = None) -> dict[str, LLCResult]:
    """Part name -> its LLC over the chosen checkpoints, for the refinement ``spec``. ``whole``: the
    ordinary LLC of this run with the same ``config`` and checkpoints (e.g. a sweep's llc.json,
    estimated just before); ``components`` then takes it as its whole-model row, which it equals bit
    for bit, instead of sampling the whole model again."""
    spec = refinements(spec)
    model = run.new_model()
    steps = select_checkpoints(run, checkpoints)
    params = [run.state_dict(step) for step in steps]
    reuse = spec == "components" and whole is not None and [e.step for e in whole.entries] == steps
    if spec == "components":
        data = run.dataset()
        masks = {**({} if reuse else {WHOLE: None}), **model_components(model)}
        sizes = {name: data.n_train for name in masks}
        inputs = dict(data=(data.train_x, data.train_y), set_masks=[m for m in masks.values() for _ in steps])
    else:
        frequency = strongest_frequency(run) if spec.startswith("data:frequency") else 1
        sets = data_subsets(run.dataset(), run.config.training.seed, spec, config.batch_size, frequency)
        sizes = {name: int(y.shape[0]) for name, (_, y) in sets.items()}
        inputs = dict(data=[subset for subset in sets.values() for _ in steps])
    result = sample_llc(model, param_sets=params * len(sizes), config=config, checkpoint_ids=steps * len(sizes),
                          training_steps=steps * len(sizes), progress=progress, **inputs)
    nbeta = result.settings["nbeta"]
    parts = {name: result.part(i * len(steps), (i + 1) * len(steps), part=name, n_pairs=sizes[name],
                               nbeta=nbeta[i * len(steps)] if isinstance(nbeta, list) else nbeta)
             for i, name in enumerate(sizes)}
    if not reuse:
        return parts
    own = {**result.settings, "part": WHOLE, "n_pairs": sizes[next(iter(sizes))], "nbeta": nbeta}
    return {WHOLE: replace(whole, settings=own), **parts}


def table_columns(spec: str, parts: dict[str, LLCResult]) -> dict[str, float | None]:
    """The last checkpoint's refined LLCs as flat table columns (a sweep's results.csv):
    ``wr_<component>`` per component; ``dr_bin<i>`` per difference bin and their coefficient of
    variation ``dr_bins_cv`` (std over bins / mean: how much λ̂ depends on a − b); ``dr_phase<i>``
    and ``dr_phase_cv`` the same for frequency-phase bins; ``dr_held_out`` and ``dr_trained_like_held_out``
    (training pairs as many as the held-out ones: the same nβ)."""
    last = {name: part.entries[-1].llc_mean for name, part in parts.items() if name != WHOLE}
    if spec == "components":
        return {f"wr_{name}": value for name, value in last.items()}
    if spec == "data:trained":
        return {"dr_held_out": last["held-out"], "dr_trained_like_held_out": last[TRAINED_LIKE_HELD_OUT]}
    values = torch.tensor([float("nan") if v is None else v for v in last.values()], dtype=torch.float64)
    cv = float(values.std() / values.mean()) if len(values) > 1 and not values.isnan().any() else None  # None: a bin diverged
    prefix, cv_name = ("dr_bin", "dr_bins_cv") if spec.startswith("data:difference") else ("dr_phase", "dr_phase_cv")
    return {**{f"{prefix}{i}": value for i, value in enumerate(last.values())}, cv_name: cv}


def figure_stem(spec: str) -> str:
    """figures/<stem>.png of a refinement: llc_refined_components, llc_refined_data_trained, ..."""
    return "llc_refined_" + "_".join(spec.split(":")[:2])


def plot_refined(spec: str, refined: dict):
    """λ̂ of each part over training (± std over chains); the whole model in black."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, (name, entries) in enumerate(refined["parts"].items()):
        style = dict(color="k", lw=2) if name == WHOLE else dict(color=f"C{i % 10}")
        draw_llc_curve(ax, entries, ms=3, capsize=2, label=name, **style)
    what = "weight-refined LLC per component" if spec == "components" else f"data-refined LLC per subset ({spec})"
    ax.set(xlabel="training step", ylabel="λ̂", title=what[0].upper() + what[1:])
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def save_refined(run: Run, spec: str, parts: dict[str, LLCResult]) -> tuple[Path, Path]:
    """Add this refinement to RUN/results/llc_refined.json (other refinements kept) and draw its figure."""
    first = next(iter(parts.values()))
    settings = {k: v for k, v in first.settings.items() if k not in ("part", "n_pairs", "n_train", "nbeta")} | {
        "run": str(run.path), "pairs": {name: part.settings["n_pairs"] for name, part in parts.items()},
        "nbeta": {name: part.settings["nbeta"] for name, part in parts.items()}}
    entry = {"settings": json_safe(settings), "parts": {name: [json_safe(e.row()) for e in part.entries] for name, part in parts.items()}}
    stored = {}
    if run.paths.llc_refined.exists():
        try:
            stored = read_json(run.paths.llc_refined, run.path)
        except GrokscopeError:
            stored = {}  # unreadable: replaced by this refinement
    stored[spec] = entry
    atomic_write_json(run.paths.llc_refined, stored)
    figure = run.paths.figure(figure_stem(spec))
    save_figure(plot_refined(spec, entry), figure)
    return run.paths.llc_refined, figure
