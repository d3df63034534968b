"""The sweep page: DIR/report.html from a sweep directory's stored table, fits and figures
(nothing is recomputed). Points not yet run and failed points are named."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import GrokscopeError
from ..layout import SweepPaths
from ..store import read_json
from ..sweeps.fits import axis_fields
from ..sweeps.spec import parse_spec, sweep_points
from ..sweeps.table import read_results, refined_columns
from ..thresholds import GENERALISED_TEST_ACCURACY
from .page import Section, command, embed_png, fmt, render_page

SHOWN_COLUMNS = [
    ("status", "status"), ("final_test_acc", "test acc"), ("grokking_step", "grokking step"), ("llc_mean", "λ̂"),
    ("llc_std", "± std"), ("llc_status", "λ̂ status"), ("llc_mala", "MALA"), ("llc_r_hat", "R-hat"),
    ("llc_diverged_chains", "diverged"), ("verdict", "verdict"),
    ("key_frequencies", "key freqs"), ("error", "error"),
]


def _number(text: str) -> str:
    try:
        return fmt(float(text), ".4g")
    except ValueError:
        return text


def build_sweep_report(sweep_dir: str | Path) -> Path:
    """Write DIR/report.html for the sweep in ``sweep_dir`` and return its path."""
    sweep_dir = Path(sweep_dir).resolve()
    if not SweepPaths(sweep_dir).is_sweep():
        raise GrokscopeError(f"{sweep_dir} is not a sweep directory (no sweep.json); make one with `grokscope sweep`")
    rerun = command("grokscope", "sweep", SweepPaths(sweep_dir).spec, "--out", sweep_dir)
    summary, table, figures, provenance = (Section("summary", "Summary"), Section("results", "Results"),
                                           Section("figures", "Figures"), Section("provenance", "Provenance"))
    try:
        spec_data = read_json(SweepPaths(sweep_dir).spec, sweep_dir)
        spec = parse_spec(spec_data, SweepPaths.spec)
    except GrokscopeError as err:
        summary.missing.append(f"unreadable: sweep.json ({err})")
        spec_data, spec = None, None
    rows = []
    if SweepPaths(sweep_dir).results.exists():
        rows = read_results(sweep_dir)
    else:
        summary.missing.append(f"missing: {SweepPaths.results} (make it with `{rerun}`)")

    if spec is not None:
        names = {r["point"] for r in rows}
        pending = [p.name for p in sweep_points(spec) if p.name not in names]
        done = sum(r["status"] == "done" for r in rows)
        failed = [r for r in rows if r["status"] == "failed"]
        summary.tables.append({"header": None, "css": "summary", "rows": [
            ["sweep", spec.name], ["base preset", spec.preset], ["grid", json.dumps(spec.grid)],
            ["points", f"{done} done, {len(failed)} failed, {len(pending)} not yet run"],
            ["LLC", f"{spec.llc.checkpoints} checkpoints; SGLD {json.dumps(spec.llc.sgld)}"],
            ["refined LLCs", ", ".join(spec.refine) or "none"]]})
        if pending:
            summary.missing.append(f"{len(pending)} points not yet run ({', '.join(pending[:5])}{' …' if len(pending) > 5 else ''}); "
                                   f"run `{rerun}`")
        for row in failed:
            summary.missing.append(f"failed: {row['point']}: {row['error']} (rerun `{rerun}` to retry)")
        _fits(sweep_dir, summary)
        _separation(sweep_dir, summary)
        _figures(sweep_dir, spec, rerun, figures)
        keys = list(spec.grid)
        shown = SHOWN_COLUMNS[:-1] + [(column, column) for column in refined_columns(rows)] + SHOWN_COLUMNS[-1:]  # error last
        table.tables.append({"header": ["point", *keys, *(title for _, title in shown)], "css": "",
                             "rows": [[r["point"], *(r[k] for k in keys), *(_number(r.get(c, "")) for c, _ in shown)] for r in rows]})
        table.text = f"Every point is an ordinary run directory under {SweepPaths(sweep_dir).runs}; `grokscope report` on one builds its page."
    if spec_data is not None:
        provenance.pre.append(json.dumps(spec_data, indent=2))
    return render_page(SweepPaths(sweep_dir).report, f"grokscope sweep: {sweep_dir.name}", f"Sweep directory {sweep_dir}",
                       [summary, figures, table, provenance])


def _fits(sweep_dir: Path, section: Section) -> None:
    path = SweepPaths(sweep_dir).fits
    try:
        fits = read_json(path, sweep_dir) if path.exists() else {}
    except GrokscopeError as err:
        section.missing.append(f"unreadable: {SweepPaths.fits} ({err})")
        return
    rows = [[f"LLC against {field}", fit["series"], f"{fit['n_points']} ({fit.get('points', 'all')})", fmt(fit["slope"]),
             fmt(fit["intercept"]), fmt(fit["r2"], ".3f")] for field, field_fits in fits.items() for fit in field_fits]
    if rows:
        section.tables.append({"header": ["least-squares line", "series", "points (which)", "slope", "intercept", "R²"], "css": "",
                               "rows": rows})


def _separation(sweep_dir: Path, section: Section) -> None:
    path = SweepPaths(sweep_dir).separation
    try:
        entries = read_json(path, sweep_dir) if path.exists() else []
    except GrokscopeError as err:
        section.missing.append(f"unreadable: {SweepPaths.separation} ({err})")
        return
    rows = [[e["column"], f"{e['n_pizza']} / {e['n_clock']}", fmt(e["pizza_mean"]), fmt(e["clock_mean"]), fmt(e["auroc"], ".2f"),
             f"{fmt(e['low'], '.2f')} – {fmt(e['high'], '.2f')}",
             "" if "auroc_ok_only" not in e else f"{fmt(e['auroc_ok_only'], '.2f')} ({e['n_pizza_ok']} / {e['n_clock_ok']} ok)"]
            for e in entries]
    if rows:
        section.tables.append({"header": ["LLC column as a Pizza score", "pizza / clock points", "pizza mean", "clock mean",
                                          "AUROC (all points)", "95% bootstrap", "AUROC (estimates ok only)"], "css": "", "rows": rows})


def _figures(sweep_dir: Path, spec, rerun: str, section: Section) -> None:
    stems = [(f"llc_vs_{field}", f"Final LLC against {field}: mean ± std over seeds, least-squares line over networks that "
              f"generalise (hollow: test accuracy < {GENERALISED_TEST_ACCURACY}, not fitted)") for field in axis_fields(spec.grid)]
    if spec.llc.checkpoints == "all":
        stems.append(("llc_over_training", "LLC over training, mean ± std across seeds"))
    for stem, caption in stems:
        path = SweepPaths(sweep_dir).figure(stem)
        if not path.exists():
            section.missing.append(f"missing: figures/{stem}.png (make it with `{rerun}`)")
        elif (data := embed_png(path, sweep_dir)) is None:
            section.missing.append(f"refused: figures/{stem}.png is not a regular file inside the sweep (rerun `{rerun}`)")
        else:
            section.figures.append({"caption": caption, "data": data})
