"""Ground truth (REFERENCE §3): the estimator against known learning coefficients.

Settings are those of grokscope.llc.validate (documented in docs/validation.md)."""

import numpy as np
import pytest

from grokscope.llc.validate import LARGER_DLN_CASES, REDUCED_RANK_CASES, dln_case, normal_crossing_case, regular_case, run_case

pytestmark = pytest.mark.slow


def test_regular_model_is_d_over_2():
    row = run_case(regular_case(d=6))
    assert abs(row["rel_error"]) <= 0.10, row


def test_normal_crossings_single_variable():
    rows = {p: run_case(normal_crossing_case(p)) for p in [(0, 1), (0, 2), (0, 3)]}
    assert abs(rows[(0, 1)]["rel_error"]) <= 0.20, rows[(0, 1)]
    assert abs(rows[(0, 2)]["rel_error"]) <= 0.20, rows[(0, 2)]
    estimates = [rows[p]["estimate"] for p in [(0, 1), (0, 2), (0, 3)]]
    assert estimates[0] > estimates[1] > estimates[2], estimates


def test_deep_linear_networks():
    rows = [run_case(dln_case(w, r)) for w, r in REDUCED_RANK_CASES + LARGER_DLN_CASES]
    errors = np.array([abs(r["rel_error"]) for r in rows])
    assert errors.mean() <= 0.15, rows
    assert errors.max() <= 0.30, rows
