"""`grokscope demo`: from nothing to a report: train the `example` preset, estimate the LLC of all
its checkpoints (4 chains each, ε chosen from the data, each estimate continued until it settles),
run every analysis, and write RUN/report.html."""

from __future__ import annotations

import time
from pathlib import Path

from .analysis import analyze_run, save_analysis, save_stages, verdict_summary
from .config import build_config
from .llc.api import run_llc
from .llc.config import sgld_config
from .llc.diagnostics.health import llc_value
from .llc.runs.checkpoints import save_llc
from .report import build_run_report
from .training import train

# the default SGLD settings with ε chosen from the data (--auto), plus what the report draws
DEMO_SGLD = dict(save_samples=20, step_metrics=True)


def run_demo(out: str | Path = "runs/demo", progress: bool = True, command: str = "grokscope.demo.run_demo() (Python API)") -> Path:
    timings = {}
    start = time.perf_counter()
    run = train(build_config("example"), out, progress=progress, command=command)
    timings["train"] = time.perf_counter() - start

    mark = time.perf_counter()
    llc = run_llc(run, sgld_config(**DEMO_SGLD), "all", progress=progress, auto_at="last")
    save_llc(run, llc)
    timings["llc"] = time.perf_counter() - mark

    mark = time.perf_counter()
    analysis = analyze_run(run, progress=progress)
    save_analysis(run, analysis)
    stages = save_stages(run)
    timings["analyses"] = time.perf_counter() - mark

    mark = time.perf_counter()
    page = build_run_report(run.path)
    timings["report"] = time.perf_counter() - mark

    stored = llc.to_dict()["checkpoints"]
    valid = [e for e in stored if e["llc_mean"] is not None]
    print(run.summary_line())
    if valid:
        peak = max(valid, key=lambda e: e["llc_mean"])
        print(f"LLC ({llc.status_line()}): peak {llc_value(peak)} at step {peak['step']}; final {llc_value(valid[-1])}")
    else:
        print(f"LLC: {llc.status_line()}: {stored[-1]['reason']}")
    print("stages: " + "; ".join(f"{s['start']}–{s['end']} {s['phase']} (λ̂ {s['llc_trend']})" for s in stages["stages"]))
    print(f"circuit: {verdict_summary(analysis.circuit_json())}; key frequencies {analysis.key_frequencies}")
    print("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()) + f"; total {time.perf_counter() - start:.1f} s")
    print(f"report: {page}")
    return page
