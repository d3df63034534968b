"""The run report: one self-contained HTML page (every figure embedded as base64 PNG, no network
request), built from stored results only. Missing or unreadable results are named, with the
command that makes them; everything else still renders."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

from ..analysis.analyze import verdict_summary
from ..analysis.registry import figures_of, own_sections
from ..analysis.stages import plot_stages, stage_table
from ..errors import GrokscopeError
from ..layout import RunPaths
from ..llc.diagnostics.health import llc_value, status_line
from ..llc.figures import plot_calibration
from ..llc.runs.refine import figure_stem, plot_refined
from ..plotting import save_figure
from ..store import load_tensors, read_json, read_metadata, read_metrics
from ..thresholds import (
    CLOCK_MIN_DISTANCE_IRRELEVANCE,
    CLOCK_MIN_SUM_DEPENDENCE,
    GENERALISED_TEST_ACCURACY,
    PIZZA_MAX_DISTANCE_IRRELEVANCE,
    PIZZA_SYMMETRICITY,
)
from . import own_figures
from .page import Section, command, embed_png, fmt, render_page

BUILT_IN_SECTIONS = {"fourier", "circuit", "hessian"}  # analysis sections the report names itself; others come from ANALYSES


class RunResults:
    """Lazy, fault-tolerant access to a run's stored files."""

    def __init__(self, path: Path):
        self.path = path
        self.problems: dict[str, str] = {}

    def json(self, relative: str, command: str) -> Any:
        file = self.path / relative
        if not file.exists():
            self.problems[relative] = f"missing: {relative} (make it with `{command}`)"
            return None
        try:
            return read_json(file, self.path)
        except GrokscopeError as err:
            self.problems[relative] = f"unreadable: {relative} ({err}); rerun `{command}`"
            return None

    def note(self, relative: str) -> list[str]:
        return [self.problems[relative]] if relative in self.problems else []


def _figure_file(run_dir: Path, stem: str, caption: str, remedy: str, section: Section) -> None:
    path = RunPaths(run_dir).figure(stem)
    if not path.exists():
        section.missing.append(f"missing: {path.relative_to(run_dir)} (make it with `{remedy}`)")
    elif (data := embed_png(path, run_dir)) is None:
        section.missing.append(f"refused: {path.relative_to(run_dir)} is not a regular file inside the run (rerun `{remedy}`)")
    else:
        section.figures.append({"caption": caption, "data": data})


def _own_figure(run_dir: Path, stem: str, caption: str, fig, section: Section) -> None:
    """A figure the report draws: rendered once, saved as figures/<stem>.png and embedded."""
    path = RunPaths(run_dir).figure(stem)
    save_figure(fig, path)
    section.figures.append({"caption": caption, "data": embed_png(path, run_dir)})


def build_run_report(run_dir: str | Path) -> Path:
    """Write RUN/report.html from the run's stored results and return its path."""
    run_dir = Path(run_dir).resolve()
    paths = RunPaths(run_dir)
    if not paths.is_run():
        raise GrokscopeError(f"{run_dir} is not a grokscope run (no {RunPaths.config}); `grokscope report` needs a run directory")
    results = RunResults(run_dir)
    config = results.json(RunPaths.config, "grokscope train")
    manifest = results.json(RunPaths.manifest, "grokscope train")
    try:
        metrics = read_metrics(run_dir)
    except GrokscopeError as err:
        metrics, results.problems[RunPaths.metrics] = [], f"unreadable: {RunPaths.metrics} ({err})"
    llc = results.json(RunPaths.llc, command("grokscope", "llc", run_dir))
    fourier = results.json(RunPaths.fourier, command("grokscope", "analyze", run_dir))
    circuit = results.json(RunPaths.circuit, command("grokscope", "analyze", run_dir))
    stages = results.json(RunPaths.stages, command("grokscope", "stages", run_dir)) if llc else None
    refined = results.json(RunPaths.llc_refined, command("grokscope", "llc", run_dir) + " --refine ...") if (run_dir / RunPaths.llc_refined).exists() else None
    posterior = results.json(RunPaths.posterior, command("grokscope", "posterior", run_dir)) if (run_dir / RunPaths.posterior).exists() else None
    builders = [
        ("summary", "Summary", lambda: _summary(metrics, llc, circuit, fourier, results), [RunPaths.llc, RunPaths.circuit]),
        ("training", "Training curves", lambda: _training(run_dir, metrics, stages, results), [RunPaths.metrics]),
        ("llc", "Local learning coefficient over training", lambda: _llc(run_dir, llc, metrics, stages, refined, results),
         [RunPaths.llc, RunPaths.stages, RunPaths.llc_refined]),
        ("health", "SGLD health", lambda: _health(run_dir, llc, results), [RunPaths.llc]),
        ("fourier", "Fourier anatomy", lambda: _fourier(run_dir, fourier, results), [RunPaths.fourier]),
        ("circuit", "Pizza or Clock", lambda: _circuits(run_dir, circuit, results), [RunPaths.circuit]),
        *[(section_id, title, partial(_analysis_section, run_dir, section_id, title, fourier, results), [RunPaths.fourier])
          for section_id, title in {"hessian": "Hessian spectrum", **own_sections(BUILT_IN_SECTIONS)}.items()],
        *([("posterior", POSTERIOR_TITLE, lambda: _posterior(run_dir, posterior, results), [RunPaths.posterior])]
          if (run_dir / RunPaths.posterior).exists() else []),
        ("samples", "SGLD samples (2-D PCA)", lambda: _samples(run_dir), [RunPaths.llc_samples]),
        ("provenance", "Provenance", lambda: _provenance(config, manifest, llc, results), [RunPaths.config, RunPaths.manifest]),
    ]
    sections = [_guarded(build, section_id, title, files, run_dir) for section_id, title, build, files in builders]
    return render_page(paths.report, f"grokscope report: {run_dir.name}", f"Run directory {run_dir}", sections)


def _guarded(build, section_id: str, title: str, files: list[str], run_dir: Path) -> Section:
    """A section, or, when a stored file has an unexpected structure, the section naming that file."""
    try:
        return build()
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
        section = Section(section_id, title)
        section.missing.append(f"unreadable: {' or '.join(files)} has an unexpected structure ({type(err).__name__}: {err}); "
                               f"rerun the command that makes it (files in {run_dir})")
        return section


def _summary(metrics, llc, circuit, fourier, results: RunResults) -> Section:
    section = Section("summary", "Summary")
    rows = []
    if metrics:
        last = metrics[-1]
        grok = next((int(r["step"]) for r in metrics if r["test_acc"] >= GENERALISED_TEST_ACCURACY), None)
        rows += [["final train accuracy", fmt(last["train_acc"], ".4f")], ["final test accuracy", fmt(last["test_acc"], ".4f")],
                 [f"grokking step (test accuracy ≥ {GENERALISED_TEST_ACCURACY})", fmt(grok)]]
    else:
        section.missing.append(f"missing: {RunPaths.metrics} (make it with `grokscope train`)")
    if llc:
        entries = llc["checkpoints"]
        rows.append(["LLC estimates", status_line([e.get("status", "ok") for e in entries])])
        valid = [e for e in entries if e["llc_mean"] is not None]
        if valid:
            peak = max(valid, key=lambda e: e["llc_mean"])
            rows += [["peak LLC λ̂ (step)", f"{llc_value(peak)} (step {peak['step']})"], ["final LLC λ̂", llc_value(valid[-1])]]
    section.missing += results.note(RunPaths.llc)
    if circuit:
        rows += [["circuit verdict", circuit["final_verdict"]], ["circuit formed at step", fmt(circuit["circuit_formed_at"])],
                 ["key frequencies", ", ".join(map(str, circuit["key_frequencies"]))]]
    section.missing += results.note(RunPaths.circuit)
    section.tables.append({"header": None, "rows": rows, "css": "summary"})
    return section


def _training(run_dir: Path, metrics, stages, results: RunResults) -> Section:
    section = Section("training", "Training curves")
    if metrics:
        shaded = " (shaded: the stages, see the LLC section)" if stages else ""
        _own_figure(run_dir, "training", f"Full-batch train and test loss and accuracy{shaded}",
                    own_figures.training_curves(metrics, stages), section)
    else:
        section.missing += results.note(RunPaths.metrics) or [f"missing: {RunPaths.metrics} (make it with `grokscope train`)"]
    return section


def _llc(run_dir: Path, llc, metrics, stages, refined, results: RunResults) -> Section:
    section = Section("llc", "Local learning coefficient over training")
    section.missing += results.note(RunPaths.llc)
    if llc:
        s = llc["settings"]
        rmsprop = f" (α = {s.get('rmsprop_alpha')}, eps = {s.get('rmsprop_eps')})" if s.get("sampler") == "rmsprop_sgld" else ""
        budget = f"{s['n_steps']} steps, continued until settled up to {s['max_steps']}" if "max_steps" in s else f"{s['n_steps']} steps"
        section.text = (f"Sampler {s.get('sampler', 'sgld')}{rmsprop}. "
                        f"λ̂ = nβ (E[L] − L_n(w*)) with nβ = {s['nbeta']:.4g} ({s['nbeta_convention']}), ε = {s['epsilon']}, "
                        f"γ = {s['gamma']}, {budget}, m = {s['batch_size']}, {s['chains']} chains per checkpoint; "
                        f"error bars: std over chains; hollow points: estimates that are not ok. "
                        f"{status_line([e.get('status', 'ok') for e in llc['checkpoints']])}.")
        _figure_file(run_dir, "llc", "λ̂ per checkpoint with train and test loss", command("grokscope", "llc", run_dir), section)
        section.missing += results.note(RunPaths.stages)
        if stages and metrics:
            _own_figure(run_dir, "stages", "Developmental stages: boundaries at the critical points of λ̂ and of the test loss "
                        f"(λ̂ peak at step {stages['llc_peak_step']}, grokking at step {stages['grokking_step']})",
                        plot_stages(llc, metrics, stages), section)
            section.tables.append({"header": ["steps", "phase", "λ̂", "what happens"], "rows": stage_table(stages), "css": ""})
    section.missing += results.note(RunPaths.llc_refined)
    for spec, entry in (refined or {}).items():
        if not (isinstance(entry, dict) and isinstance(entry.get("parts"), dict) and entry["parts"]):
            section.missing.append(f"unreadable: {RunPaths.llc_refined} entry {spec!r} (rerun `{command('grokscope', 'llc', run_dir)} --refine ...`)")
            continue
        _own_figure(run_dir, figure_stem(spec), f"Refined LLC ({spec}; grokscope llc --refine {spec})", plot_refined(spec, entry), section)
        last = {name: entries[-1] for name, entries in entry["parts"].items()}
        section.tables.append({"header": [spec, f"λ̂ at step {next(iter(last.values()))['step']}", "std", "status", "reasons"],
                               "css": "", "rows": [[name, fmt(e["llc_mean"], ".1f"), fmt(e["llc_std"], ".1f"), e.get("status", ""),
                                                    "; ".join(e["flags"])] for name, e in last.items()]})
    return section


POSTERIOR_TITLE = "Which pairs teach which: per-pair posterior statistics"


def _posterior(run_dir: Path, posterior, results: RunResults) -> Section:
    """The stored figures and summaries of `grokscope posterior` (nothing recomputed)."""
    section = Section("posterior", POSTERIOR_TITLE)
    section.missing += results.note(RunPaths.posterior)
    if not posterior:
        return section
    remedy = command("grokscope", "posterior", run_dir)
    section.text = (f"{posterior['status']}; each statistic reads the chains of that estimate. Conventions: {posterior['conventions']}. "
                    "The (a + b) share includes what pairs share through their common label (present at initialisation).")
    for stem, caption in (("posterior_over_training", "Posterior loss gain and the loss kernel's (a + b) and (a − b) structure over training"),
                          ("posterior_kernel", "The loss kernel (correlation form) ordered by (a + b) and by (a − b), block means"),
                          ("posterior_susceptibility", "Susceptibilities of the whole model and each component to each data class")):
        _figure_file(run_dir, stem, caption, remedy, section)
    section.tables.append({"header": ["step", "status", "draws", "loss gain: trained", "held-out", "kernel share: a + b", "a − b", "chance"],
                           "css": "", "rows": [[r["step"], r["status"], r["draws"], fmt(r.get("loss_gain_trained"), ".4f"),
                                                fmt(r.get("loss_gain_held_out"), ".4f"), fmt(r.get("kernel_share_sum"), ".3f"),
                                                fmt(r.get("kernel_share_difference"), ".4f"), fmt(r.get("kernel_share_chance"), ".4f")] for r in posterior["checkpoints"]]})
    return section


def _health(run_dir: Path, llc, results: RunResults) -> Section:
    section = Section("health", "SGLD health")
    section.missing += results.note(RunPaths.llc)
    if not llc:
        return section
    rows = [[e["step"], e.get("status", "not recorded"), fmt(e["llc_mean"], ".2f"), fmt(e.get("mcse"), ".2f"), fmt(e["llc_std"], ".2f"),
             fmt(e.get("steps_used")), fmt(e.get("burn_in")), fmt(e["r_hat"], ".3f"), fmt(e.get("r_hat_batch"), ".3f"),
             fmt(e.get("ess_bulk", e.get("ess")), ".0f"), fmt(e.get("ess_batch"), ".0f"), fmt(e["frac_below_init"], ".3f"),
             e["diverged_chains"], fmt(e.get("mala_acceptance"), ".3f"), "; ".join(dict.fromkeys(filter(None, [e.get("reason"), *e.get("flags", [])])))]
            for e in llc["checkpoints"]]
    section.text = status_line([e.get("status", "ok") for e in llc["checkpoints"]]) + " (llc/diagnostics/health.py: ok, imprecise, unreliable, none)."
    section.tables.append({"header": ["step", "status", "λ̂", "MCSE", "std", "steps", "burn-in", "R-hat", "R-hat (batch means)",
                                      "bulk ESS", "ESS (batch means)", "draws < L_n(w*)", "diverged", "MALA", "reasons"],
                           "rows": rows, "css": ""})
    if "status" not in llc["checkpoints"][0]:
        section.missing.append(f"not recorded: statuses (this llc.json predates them; rerun `{command('grokscope', 'llc', run_dir)}`)")
    calibration = llc["settings"].get("calibration")
    if calibration:
        rec = calibration["recommended"]
        section.tables.append({"header": ["ε", "λ̂", "std", "steps", "R-hat", "MALA", "status", "reasons"], "css": "", "rows": [
            [fmt(c["epsilon"], ".3g"), fmt(c["llc_mean"], ".3g"), fmt(c["llc_std"], ".2g"), fmt(c.get("steps_used")),
             fmt(c["r_hat"], ".3f"), fmt(c["mala_acceptance"], ".3f"), c.get("status", ""), "; ".join(c["flags"])]
            for c in calibration["cells"]]})
        chosen = "none" if rec["epsilon"] is None else f"{rec['epsilon']:.3g}"
        _own_figure(run_dir, "llc_calibration", f"--auto: chosen ε = {chosen} ({rec['why']}), at step "
                    f"{calibration['checkpoint_id']}", plot_calibration(calibration), section)
    settings = llc["settings"]
    section.tables.append({"header": ["setting", "value"], "css": "",
                           "rows": [[k, json.dumps(v) if isinstance(v, (list, dict)) else fmt(v)] for k, v in settings.items()]})
    if any(e["loss_trace"] for e in llc["checkpoints"]):
        _own_figure(run_dir, "sgld_traces", "SGLD minibatch-loss traces per chain (grey: the burn-in chosen from each trace)",
                    own_figures.sgld_traces(llc), section)
    else:
        section.missing.append("no loss traces: no checkpoint was sampled (see the statuses above)")
    if any(e.get("step_metrics") for e in llc["checkpoints"]):
        _own_figure(run_dir, "sgld_step_metrics", "Norms of each step's terms per chain (grokscope llc --step-metrics)",
                    own_figures.step_metrics(llc), section)
    else:
        section.missing.append(f"not recorded: step metrics (make them with `{command('grokscope', 'llc', run_dir, '--step-metrics')}`)")
    return section


def _fourier(run_dir: Path, fourier, results: RunResults) -> Section:
    section = Section("fourier", "Fourier anatomy")
    section.missing += results.note(RunPaths.fourier)
    if fourier:
        section.text = f"Key frequencies of the final embedding: {', '.join(map(str, fourier['key_frequencies']))}."
        for stem, caption in figures_of("fourier"):
            _figure_file(run_dir, stem, caption, command("grokscope", "analyze", run_dir), section)
    return section


def _circuits(run_dir: Path, circuit, results: RunResults) -> Section:
    section = Section("circuit", "Pizza or Clock")
    section.missing += results.note(RunPaths.circuit)
    if circuit:
        section.text = (f"Final verdict: {verdict_summary(circuit)}. "
                        f"Pizza: gradient symmetricity ≥ {PIZZA_SYMMETRICITY} and distance irrelevance ≤ {PIZZA_MAX_DISTANCE_IRRELEVANCE}; "
                        f"Clock: distance irrelevance ≥ {CLOCK_MIN_DISTANCE_IRRELEVANCE} and sum dependence ≥ {CLOCK_MIN_SUM_DEPENDENCE} "
                        f"(logits a function of a + b − c). The first two metrics are Zhong et al. 2023's, the cut-offs ours; where the "
                        f"architecture fixes gradient symmetricity (the MLP) it is not used. Below {GENERALISED_TEST_ACCURACY} test "
                        "accuracy no circuit is called.")
        for stem, caption in figures_of("circuit"):
            _figure_file(run_dir, stem, caption, command("grokscope", "analyze", run_dir), section)
        section.tables.append({"header": ["step", "test acc", "gradient symmetricity", "distance irrelevance", "sum dependence",
                                          "frequency doubling", "verdict"],
                               "css": "", "rows": [[c["step"], fmt(c["test_acc"], ".3f"), fmt(c["gradient_symmetricity"], ".3f"),
                                                    fmt(c["distance_irrelevance"], ".3f"), fmt(c.get("sum_dependence"), ".3f"),
                                                    fmt(c["frequency_doubling"], ".3f"),
                                                    c["verdict"]] for c in circuit["checkpoints"]]})
    return section


def _analysis_section(run_dir: Path, section_id: str, title: str, fourier, results: RunResults) -> Section:
    """The figures of the analyses that report in section ``section_id`` (ANALYSES)."""
    section = Section(section_id, title)
    section.missing += results.note(RunPaths.fourier)
    if fourier:
        for stem, caption in figures_of(section_id):
            _figure_file(run_dir, stem, caption, command("grokscope", "analyze", run_dir), section)
    return section


def _samples(run_dir: Path) -> Section:
    section = Section("samples", "SGLD samples (2-D PCA)")
    path = RunPaths(run_dir).llc_samples
    if not path.exists():
        section.missing.append(f"missing: {RunPaths.llc_samples} (make it with `{command('grokscope', 'llc', run_dir, '--save-samples', 20)}`)")
        return section
    try:
        tensors = load_tensors(path, root=run_dir)
        step = read_metadata(path, run_dir).get("step", "?")
    except GrokscopeError as err:
        section.missing.append(f"unreadable: {RunPaths.llc_samples} ({err})")
        return section
    _own_figure(run_dir, "sgld_pca", "Saved SGLD samples of the last checkpoint, projected on their first two principal components",
                own_figures.sample_pca(tensors["samples"], tensors["losses"], step), section)
    return section


def _provenance(config, manifest, llc, results: RunResults) -> Section:
    section = Section("provenance", "Provenance")
    section.missing += results.note(RunPaths.config) + results.note(RunPaths.manifest)
    if manifest:
        section.tables.append({"header": None, "css": "summary", "rows": [
            ["package", f"{manifest.get('package')} {manifest.get('version')}"], ["torch", manifest.get("torch_version")],
            ["config hash", manifest.get("config_hash")], ["training command", manifest.get("command")],
            ["LLC seed", llc["settings"]["seed"] if llc else "—"]]})
    if config:
        section.pre.append(json.dumps(config, indent=2))
    return section
