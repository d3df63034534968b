"""The figures and the animation of a run's analysis, written under RUN/figures/."""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from importlib import import_module
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from ..atomic import atomic_write_bytes, atomic_write_json
from ..plotting import save_figure
from ..run import Run
from ..thresholds import (
    CLOCK_MIN_DISTANCE_IRRELEVANCE,
    CLOCK_MIN_SUM_DEPENDENCE,
    PIZZA_MAX_DISTANCE_IRRELEVANCE,
    PIZZA_SYMMETRICITY,
)
from . import charts
from .analyze import RunAnalysis
from .registry import ANALYSES
from .fourier import mode_circle

CIRCLE_CHECKPOINTS = 4
MAX_CIRCLE_KEYS = 4


def analysis_figures(run: Run, analysis: RunAnalysis) -> dict[str, plt.Figure]:
    """Every figure of the analyses in ANALYSES, by file stem (each drawn by its ``draw`` function)."""
    figs = {}
    for entry in ANALYSES.values():
        for figure in entry.figures:
            module, function = figure.draw.split(":")
            figs[figure.stem] = getattr(import_module(module), function)(run, analysis)
    return figs


def _embedding_magnitudes(analysis: RunAnalysis) -> np.ndarray:
    return np.array([c.embedding_magnitudes for c in analysis.checkpoints]).T


def fourier_magnitudes(run: Run, analysis: RunAnalysis) -> plt.Figure:
    return charts.heatmap_over_training(analysis.steps, _embedding_magnitudes(analysis), "embedding mode magnitudes",
                                        "frequency k", "magnitude")


def fourier_magnitudes_unembed(run: Run, analysis: RunAnalysis) -> plt.Figure:
    return charts.heatmap_over_training(analysis.steps, np.array([c.unembedding_magnitudes for c in analysis.checkpoints]).T,
                                        "unembedding mode magnitudes", "frequency k", "magnitude")


def fourier_lines(run: Run, analysis: RunAnalysis) -> plt.Figure:
    embed = _embedding_magnitudes(analysis)
    return charts.lines_over_training(analysis.steps, {f"k={k}": embed[k].tolist() for k in range(1, embed.shape[0])},
                                      f"embedding mode magnitudes (key: {analysis.key_frequencies})", "magnitude")


def fourier_sparsity(run: Run, analysis: RunAnalysis) -> plt.Figure:
    return charts.lines_over_training(
        analysis.steps, {"share of ‖E‖² in key frequencies": [c.sparsity for c in analysis.checkpoints]},
        f"Fourier sparsity of the embedding (key frequencies {analysis.key_frequencies})", "share")


def ablation(run: Run, analysis: RunAnalysis) -> plt.Figure:
    return charts.heatmap_over_training(analysis.steps, np.array([c.ablation_losses for c in analysis.checkpoints]).T,
                                        "test loss keeping one embedding mode (k=0: constant only)", "kept frequency k",
                                        "test loss", log=True)


def progress_measures(run: Run, analysis: RunAnalysis) -> plt.Figure:
    steps = analysis.steps
    return charts.lines_over_training(
        steps,
        {"train loss": _at(run, steps, "train_loss"), "test loss": _at(run, steps, "test_loss"),
         "restricted loss": [c.restricted_loss for c in analysis.checkpoints],
         "excluded loss": [c.excluded_loss for c in analysis.checkpoints]},
        "progress measures (Nanda et al. 2023)", "loss", log=True)


def hessian(run: Run, analysis: RunAnalysis) -> plt.Figure:
    return charts.lines_over_training(
        analysis.steps, {f"λ{i + 1}": [c.hessian_top[i] if i < len(c.hessian_top) else None for c in analysis.checkpoints]
                         for i in range(len(analysis.checkpoints[0].hessian_top))},
        "top Hessian eigenvalues of the training loss", "eigenvalue", log=True)


def circuit_metrics(run: Run, analysis: RunAnalysis) -> plt.Figure:
    checkpoints = analysis.checkpoints
    return charts.lines_over_training(
        analysis.steps,
        {"gradient symmetricity": [c.circuit["gradient_symmetricity"] for c in checkpoints],
         "distance irrelevance": [c.circuit["distance_irrelevance"] for c in checkpoints],
         "sum dependence": [c.circuit["sum_dependence"] for c in checkpoints],
         "frequency doubling": [c.circuit["frequency_doubling"] for c in checkpoints]},
        f"Pizza vs Clock: final verdict {analysis.final_verdict!r}, formed at step {analysis.circuit_formed_at}",
        "value",
        marks={"pizza symmetricity ≥": PIZZA_SYMMETRICITY, "pizza DI ≤": PIZZA_MAX_DISTANCE_IRRELEVANCE,
               "clock DI ≥": CLOCK_MIN_DISTANCE_IRRELEVANCE, "clock sum dependence ≥": CLOCK_MIN_SUM_DEPENDENCE})


def _at(run: Run, steps: list[int], column: str) -> list[float | None]:
    by_step = {int(r["step"]): r[column] for r in run.metrics}
    return [by_step.get(s) for s in steps]


def _chosen_steps(steps: list[int], count: int) -> list[int]:
    return sorted({steps[round(i * (len(steps) - 1) / max(count - 1, 1))] for i in range(count)})


def circles(run: Run, analysis: RunAnalysis) -> plt.Figure:
    keys = analysis.key_frequencies[:MAX_CIRCLE_KEYS]
    chosen = _chosen_steps(analysis.steps, CIRCLE_CHECKPOINTS)
    fig, axes = plt.subplots(len(chosen), len(keys), figsize=(2.6 * len(keys), 2.6 * len(chosen)), squeeze=False)
    for row, step in zip(axes, chosen):
        embed = run.model(step).embedding.weight.detach()
        charts.circles({k: mode_circle(embed, k).numpy() for k in keys}, analysis.p, axes=row)
        row[0].set_ylabel(f"step {step}")
    fig.suptitle("embedding mode circles of the key frequencies (colour: j·k mod p)")
    fig.tight_layout()
    return fig


def animation_frames(run: Run, analysis: RunAnalysis) -> list[Image.Image]:
    """One frame per checkpoint: the key-frequency circles and the mode magnitudes. Frames are
    rendered in memory, so nothing from another run can leak in."""
    keys = analysis.key_frequencies[:MAX_CIRCLE_KEYS]
    top = max(max(c.embedding_magnitudes[1:]) for c in analysis.checkpoints)
    frames = []
    for checkpoint in analysis.checkpoints:
        embed = run.model(checkpoint.step).embedding.weight.detach()
        fig = plt.figure(figsize=(3 * len(keys), 5.4))
        grid = fig.add_gridspec(2, len(keys))
        charts.circles({k: mode_circle(embed, k).numpy() for k in keys}, analysis.p,
                      axes=[fig.add_subplot(grid[0, i]) for i in range(len(keys))])
        ax = fig.add_subplot(grid[1, :])
        mags = checkpoint.embedding_magnitudes
        ax.bar(range(len(mags)), mags, color=["C3" if k in keys else "C0" for k in range(len(mags))])
        ax.set(ylim=(0, top * 1.05), xlabel="frequency k", ylabel="magnitude")
        fig.suptitle(f"step {checkpoint.step}  verdict: {checkpoint.circuit['verdict']}")
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=70)
        plt.close(fig)
        frames.append(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return frames


def save_animation(run: Run, analysis: RunAnalysis) -> list[Path]:
    """figures/evolution.gif (Pillow) and, when ffmpeg is installed, figures/evolution.mp4."""
    frames = animation_frames(run, analysis)
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=400, loop=0)
    written = [run.paths.figure("evolution", "gif")]
    atomic_write_bytes(written[0], gif.getvalue())
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg:
        with tempfile.TemporaryDirectory() as tmp:
            for i, frame in enumerate(frames):
                frame.save(Path(tmp) / f"frame_{i:04d}.png")
            out = Path(tmp) / "evolution.mp4"
            subprocess.run([ffmpeg, "-loglevel", "error", "-framerate", "2.5", "-i", str(Path(tmp) / "frame_%04d.png"),
                            "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-pix_fmt", "yuv420p", str(out)], check=True)
            written.append(run.paths.figure("evolution", "mp4"))
            atomic_write_bytes(written[1], out.read_bytes())
    return written


def save_analysis(run: Run, analysis: RunAnalysis) -> list[Path]:
    """Write results/fourier.json, results/circuit.json, every figure and the animation."""
    written = [run.paths.fourier, run.paths.circuit]
    atomic_write_json(written[0], analysis.fourier_json())
    atomic_write_json(written[1], analysis.circuit_json())
    for stem, fig in analysis_figures(run, analysis).items():
        path = run.paths.figure(stem)
        save_figure(fig, path)
        written.append(path)
    return written + save_animation(run, analysis)
