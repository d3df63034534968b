import json
import re

import pytest
from browser import NO_CHROMIUM, check_page, chromium_available
from tiny import tiny_config

from grokscope import train
from grokscope.analysis import analyze_run, save_analysis, save_stages
from grokscope.llc import sgld_config
from grokscope.llc.api import run_llc
from grokscope.llc.runs.checkpoints import save_llc
from grokscope.report import build_run_report


def report_config():
    """A run a little larger than the tiny one, so its report has stages and circuits to show."""
    return tiny_config(embed_dim=6, hidden_size=16, n_steps=300, n_checkpoints=3, batch_size=32, train_frac=0.7)



@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    run = train(report_config(), tmp_path_factory.mktemp("rep") / "run", progress=False)
    save_llc(run, run_llc(run, sgld_config(n_steps=200, batch_size=32, chains=2, save_samples=10), progress=False))
    save_analysis(run, analyze_run(run, progress=False))
    save_stages(run)
    return run


def test_full_report_is_self_contained(full_run):
    page = build_run_report(full_run.path)
    html = page.read_text()
    sources = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http://" not in html and "https://" not in html
    for section in ("Summary", "Training curves", "Local learning coefficient", "SGLD health", "Fourier anatomy",
                    "Pizza or Clock", "Hessian spectrum", "SGLD samples", "Provenance"):
        assert section in html
    assert "missing:" not in html
    assert "Developmental stages" in html
    for stem in ("training", "sgld_traces", "sgld_pca", "stages"):
        assert (full_run.path / "figures" / f"{stem}.png").read_bytes().startswith(b"\x89PNG")


def test_missing_and_corrupt_results_are_named(tmp_path):
    run = train(report_config(), tmp_path / "bare", progress=False)
    html = build_run_report(run.path).read_text()
    assert "missing: results/llc.json (make it with `grokscope llc" in html
    assert "missing: results/fourier.json (make it with `grokscope analyze" in html
    assert "Training curves" in html and "data:image/png" in html
    (run.path / "results").mkdir(exist_ok=True)
    (run.path / "results" / "llc.json").write_text('{"settings": ')
    html = build_run_report(run.path).read_text()
    assert "unreadable: results/llc.json" in html


def test_text_from_files_is_escaped(tmp_path):
    run = train(report_config(), tmp_path / "run<b>x", progress=False)
    manifest = json.loads((run.path / "manifest.json").read_text())
    manifest["command"] = "grokscope train <script>alert(1)</script>"
    (run.path / "manifest.json").write_text(json.dumps(manifest))
    html = build_run_report(run.path).read_text()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "run<b>x" not in html and "run&lt;b&gt;x" in html


@pytest.mark.browser
@pytest.mark.skipif(not chromium_available(), reason=NO_CHROMIUM)
def test_report_in_headless_chromium(full_run, tmp_path):
    page = build_run_report(full_run.path)
    shot = tmp_path / "report.png"
    check = check_page(page, shot)
    assert check.images >= 10 and check.images_decoded == check.images
    assert check.console_errors == []
    assert check.title == "grokscope report: run"
    assert shot.read_bytes().startswith(b"\x89PNG")
