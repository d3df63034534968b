import itertools

import numpy as np
import pytest

from grokscope.sweeps.separation import auroc, auroc_interval, separation


def test_auroc_counts_ordered_pairs_and_half_ties():
    rng = np.random.default_rng(0)
    positive, negative = rng.integers(0, 5, 9).astype(float), rng.integers(0, 5, 7).astype(float)  # many ties
    by_hand = np.mean([1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(positive, negative)])
    assert auroc(positive, negative) == pytest.approx(by_hand)
    assert auroc([3, 4], [1, 2]) == 1.0 and auroc([1, 2], [3, 4]) == 0.0 and auroc([1, 1], [1, 1]) == 0.5


def test_the_bootstrap_interval_holds_the_estimate_and_narrows_with_more_points():
    rng = np.random.default_rng(1)
    small = rng.normal(1, 1, 5), rng.normal(0, 1, 5)
    large = rng.normal(1, 1, 200), rng.normal(0, 1, 200)
    (low_s, high_s), (low_l, high_l) = auroc_interval(*small), auroc_interval(*large)
    assert low_s <= auroc(*small) <= high_s and low_l <= auroc(*large) <= high_l
    assert high_l - low_l < (high_s - low_s) / 2
    assert low_l < 0.76 < high_l  # Φ(1/√2) = 0.760 for two unit normals one apart


def test_separation_scores_each_llc_column_over_pizza_and_clock_points_only():
    rows = [{"status": "done", "verdict": v, "llc_mean": str(x), "wr_mlp": w, "dr_bins_cv": "" if v == "clock" else 0.1}
            for v, x, w in [("pizza", 10, 1.0), ("pizza", 12, 2.0), ("clock", 5, 1.5), ("clock", 6, 3.0), ("unclear", 100, 9.0)]]
    rows.append({"status": "failed", "verdict": "pizza", "llc_mean": "0"})
    found = {e["column"]: e for e in separation(rows)}
    assert set(found) == {"llc_mean", "wr_mlp"}  # dr_bins_cv has no clock values
    assert found["llc_mean"]["auroc"] == 1.0 and (found["llc_mean"]["n_pizza"], found["llc_mean"]["n_clock"]) == (2, 2)
    assert found["wr_mlp"]["auroc"] == 0.25 and found["llc_mean"]["pizza_mean"] == 11.0
    assert separation([r for r in rows if r["verdict"] != "clock"]) == []  # one verdict: nothing to separate


def test_the_llc_separation_is_also_given_over_points_whose_estimate_is_ok():
    rows = [{"status": "done", "verdict": v, "llc_mean": str(x), "llc_status": s}
            for v, x, s in [("pizza", 10, "ok"), ("pizza", 4, "unreliable"), ("clock", 5, "ok"), ("clock", 12, "imprecise")]]
    entry = separation(rows)[0]
    assert entry["auroc"] == 0.25 and (entry["n_pizza"], entry["n_clock"]) == (2, 2)  # all points: only 10 > 5 of 4 pairs
    assert entry["auroc_ok_only"] == 1.0 and (entry["n_pizza_ok"], entry["n_clock_ok"]) == (1, 1)
