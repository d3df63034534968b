"""Figures of LLC results (matplotlib, no display needed)."""

from __future__ import annotations

from ..plotting import new_figure
from ..thresholds import MALA_MIN_ACCEPTANCE
from .diagnostics.health import status_line


def draw_llc_curve(ax, entries: list[dict], **style) -> None:
    """λ̂ ± std over training from stored entries (llc.json rows; those without an estimate skipped),
    placed by training step, or by checkpoint index where a run has no steps. Estimates whose status
    is not ok are drawn hollow."""
    kept = [e for e in entries if e["llc_mean"] is not None]
    x = [e["checkpoint_id"] if e["step"] is None else e["step"] for e in kept]
    line = ax.errorbar(x, [e["llc_mean"] for e in kept], yerr=[e["llc_std"] or 0.0 for e in kept], fmt="-",
                       **{"capsize": 3, **style})[0]
    ok = [e.get("status", "ok") == "ok" for e in kept]
    for filled in (True, False):
        points = [(xi, e["llc_mean"]) for xi, e, good in zip(x, kept, ok) if good == filled]
        if points:
            ax.plot(*zip(*points), "o", color=line.get_color(), mfc=line.get_color() if filled else "white",
                    label=None if filled else "not ok (hollow)")


def llc_title_settings(settings: dict) -> str:
    """nβ, ε, γ and chains of a stored result, for a figure's title (ε may be none: no step size passed)."""
    epsilon = "none" if settings.get("epsilon") is None else f"{settings['epsilon']:.3g}"
    return (f"nβ={settings['nbeta']:.4g} [{settings['nbeta_convention']}], ε={epsilon}, γ={settings['gamma']}, "
            f"{settings['chains']} chains")


def plot_llc(llc: dict, metrics: list[dict[str, float]] | None = None):
    """λ̂ against the training step with error bars, and train/test loss on a second axis (the
    original study's plot), from an LLC result in its stored form (``LLCResult.to_dict()``, llc.json)."""
    fig = new_figure(figsize=(8, 4.5))
    ax = fig.subplots()
    entries = llc["checkpoints"]
    draw_llc_curve(ax, entries, color="C0", label="LLC λ̂")
    ax.set_xlabel("checkpoint" if entries and entries[0]["step"] is None else "training step")
    ax.set_ylabel("λ̂ (LLC)", color="C0")
    if metrics:
        twin = ax.twinx()
        steps = [r["step"] for r in metrics]
        twin.plot(steps, [r["train_loss"] for r in metrics], color="C1", label="train loss")
        twin.plot(steps, [r["test_loss"] for r in metrics], color="C2", label="test loss")
        twin.set_yscale("log")
        twin.set_ylabel("loss")
        twin.legend(loc="center right")
    ax.legend(loc="upper left")
    statuses = [e.get("status", "ok") for e in entries]
    ax.set_title(f"LLC over training ({llc_title_settings(llc['settings'])}); {status_line(statuses)}", fontsize=9)
    # fixed margins that fit these labels: tight_layout would measure every text first, a noticeable
    # share of a short `grokscope llc`
    fig.subplots_adjust(left=0.085, right=0.915, bottom=0.11, top=0.93)
    return fig


def plot_calibration(report: dict):
    """λ̂ ± std against ε (one line per nβ, γ; hollow markers: flagged cells), MALA acceptance on a
    second axis with its band, the chosen ε marked."""
    fig = new_figure(figsize=(7.5, 4.5))
    ax = fig.subplots()
    mala_ax = ax.twinx()
    rows: dict[tuple[str, float, float], list[dict]] = {}
    fallback = (report.get("preconditioned") or {}).get("cells", [])
    for kind, cells in (("", report["cells"]), ("preconditioned ", fallback)):
        for cell in cells:
            rows.setdefault((kind, cell["nbeta"], cell["gamma"]), []).append(cell)
    for (kind, nbeta, gamma), row in rows.items():
        row = [c for c in sorted(row, key=lambda c: c["epsilon"]) if c["llc_mean"] is not None]
        eps = [c["epsilon"] for c in row]
        line = ax.errorbar(eps, [c["llc_mean"] for c in row], yerr=[c["llc_std"] or 0 for c in row], capsize=3,
                           label=f"{kind}λ̂ (nβ={nbeta:.4g}, γ={gamma:g})")[0]
        for c in row:
            ax.plot(c["epsilon"], c["llc_mean"], "o", color=line.get_color(), mfc=line.get_color() if c["settled"] else "white")
        mala = [(c["epsilon"], c["mala_acceptance"]) for c in row if c["mala_acceptance"] is not None]
        if mala:
            mala_ax.plot(*zip(*mala), "s--", color="grey", alpha=0.7, ms=4)
    mala_ax.axhspan(MALA_MIN_ACCEPTANCE, 1.0, color="green", alpha=0.08)
    mala_ax.set_ylim(0, 1.02)
    mala_ax.set_ylabel("MALA acceptance (grey; healthy band shaded)")
    rec = report["recommended"]
    if rec["epsilon"] is not None:
        ax.axvline(rec["epsilon"], color="black", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("ε (step size)")
    ax.set_ylabel("λ̂ ± std over chains")
    chosen = "none: no step size passes" if rec["epsilon"] is None else f"{rec['epsilon']:.3g}" + (
        " (preconditioned)" if rec.get("sampler") == "preconditioned" else "")
    ax.set_title(f"Step-size calibration: chosen ε = {chosen}\nhollow markers: cells not settled, or biased", fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig
