"""Weight-refined LLCs over training (Wang et al. 2024, arXiv 2410.02984; REFERENCE §8): the LLC
of each named component of the model (only its entries sampled, the rest held at w*), at every
chosen checkpoint, in ONE batched run of components × checkpoints × chains.

Every component of checkpoint k draws the minibatches and noise of the whole-model chains of k
(common random numbers), and the "whole" row is the ordinary estimate, equal to `grokscope llc`'s
numbers bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from ..png import save_figure
from ..run import Run
from ..store import atomic_write_json, json_safe
from .config import SGLDConfig
from .estimate import estimate_llc
from .result import LLCResult
from .selection import model_components
from .stored import select_checkpoints

WHOLE = "whole"


def run_refined_components(run: Run, config: SGLDConfig, checkpoints: str = "all", progress: bool = True) -> dict[str, LLCResult]:
    """Component name -> its LLC over the chosen checkpoints (``WHOLE`` first: the whole model)."""
    model = run.new_model()
    components = {WHOLE: None, **model_components(model)}
    steps = select_checkpoints(run, checkpoints)
    data = run.dataset()
    params = [run.state_dict(step) for step in steps]
    result = estimate_llc(
        model, (data.train_x, data.train_y), params * len(components), config=config,
        checkpoint_ids=steps * len(components), steps=steps * len(components), progress=progress,
        set_masks=[masks for masks in components.values() for _ in steps],
    )
    return {name: result.part(i * len(steps), (i + 1) * len(steps), component=name) for i, name in enumerate(components)}


def refined_json(parts: dict[str, LLCResult], run: Run) -> dict:
    """results/llc_refined.json: the settings once, then each component's entries."""
    first = next(iter(parts.values()))
    settings = {k: v for k, v in first.settings.items() if k != "component"} | {"run": str(run.path), "refine": "components"}
    return {"settings": json_safe(settings),
            "components": {name: [json_safe(e.row()) for e in part.entries] for name, part in parts.items()}}


def plot_refined(refined: dict):
    """λ̂ of each component over training beside the whole model's (± std over chains)."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, (name, entries) in enumerate(refined["components"].items()):
        kept = [e for e in entries if e["llc_mean"] is not None]
        style = dict(color="k", lw=2) if name == WHOLE else dict(color=f"C{i % 10}")
        ax.errorbar([e["step"] for e in kept], [e["llc_mean"] for e in kept], yerr=[e["llc_std"] or 0.0 for e in kept],
                    fmt="o-", ms=3, capsize=2, label=name, **style)
    ax.set(xlabel="training step", ylabel="λ̂", title="Weight-refined LLC per component (whole model in black)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def save_refined(run: Run, parts: dict[str, LLCResult]) -> tuple[Path, Path]:
    """Write RUN/results/llc_refined.json and RUN/figures/llc_refined.png."""
    refined = refined_json(parts, run)
    atomic_write_json(run.paths.llc_refined, refined)
    save_figure(plot_refined(refined), run.paths.figure("llc_refined"))
    return run.paths.llc_refined, run.paths.figure("llc_refined")
