"""Ground truth (REFERENCE §3): the estimator against known learning coefficients, with the step
size chosen by the truth-free calibration rule (no per-case ε). The whole suite with both samplers
is scripts/validation_samplers.py (docs/validation.md); here a sample of it, and the flags."""

import numpy as np
import pytest

from grokscope.llc.validation.suite import (
    dln_case,
    normal_crossing_case,
    parse_case,
    regular_case,
    run_case,
)
from grokscope.llc.validation.truth import true_llc_dln
from grokscope.thresholds import MALA_MIN_ACCEPTANCE

pytestmark = pytest.mark.slow


def test_regular_model_is_d_over_2():
    row = run_case(regular_case(d=6))
    assert abs(row["relative_error"]) <= 0.10, row


def test_normal_crossings_single_variable():
    rows = {p: run_case(normal_crossing_case(p)) for p in [(0, 1), (0, 2)]}
    assert all(abs(row["relative_error"]) <= 0.20 for row in rows.values()), rows
    assert rows[(0, 1)]["estimate"] > rows[(0, 2)]["estimate"]


def test_deep_linear_networks_of_intermediate_rank_with_auto_settings():
    rows = [run_case(dln_case(w, r)) for w, r in [([5, 3, 5], 1), ([3, 4, 5], 2)]]
    errors = np.array([abs(r["relative_error"]) for r in rows])
    assert errors.mean() <= 0.10 and errors.max() <= 0.20, [(r["case"], r["estimate"], r["settings"]["epsilon"]) for r in rows]
    for row in rows:  # the chosen cell has MALA acceptance in band, and an ok estimate is within 10%
        assert row["mala_acceptance"] >= MALA_MIN_ACCEPTANCE, row["case"]
        assert row["status"] != "ok" or abs(row["relative_error"]) <= 0.10, row["case"]
        assert row["steps_used"] >= 10_000 and row["mcse"] is not None


def test_a_step_size_that_doubles_the_estimate_is_flagged():
    row = run_case(parse_case("dln:3,4,5:2"), auto=False, epsilon=4e-6)
    assert row["true"] == true_llc_dln([3, 4, 5], 2) and row["relative_error"] > 0.5  # the over-large step
    assert any("MALA acceptance" in flag for flag in row["flags"]), row["flags"]
