"""Does an LLC-based quantity tell Pizza from Clock? Over a sweep's finished points called `pizza`
or `clock`, the area under the ROC curve of each numeric LLC column (λ̂, wr_*, dr_*) as a score
for `pizza`, with a bootstrap interval over points (REFERENCE §8, the open question); for λ̂ also
over the points whose estimate is `ok` alone.

AUROC = P(score of a random Pizza > score of a random Clock) + ½ P(tie) (the Mann–Whitney U over
n_pizza · n_clock): 0.5 is no separation, 1 or 0 perfect separation (0: Pizzas score lower).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .table import refined_columns

SCORED_COLUMNS = ("llc_mean",)  # besides every refined column
LABELS = ("pizza", "clock")
BOOTSTRAP_DRAWS = 2000


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Mann–Whitney AUROC of scores ``positive`` against ``negative`` (ties count ½)."""
    positive, negative = np.asarray(positive, float)[:, None], np.asarray(negative, float)[None, :]
    return float(((positive > negative) + 0.5 * (positive == negative)).mean())


def auroc_interval(positive: np.ndarray, negative: np.ndarray, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the AUROC over bootstrap resamples of each class's points."""
    rng = np.random.default_rng(seed)
    positive, negative = np.asarray(positive, float), np.asarray(negative, float)
    draws = [auroc(rng.choice(positive, positive.size), rng.choice(negative, negative.size)) for _ in range(BOOTSTRAP_DRAWS)]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def separation(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per LLC column: its AUROC for `pizza` against `clock` and a 95% bootstrap interval.
    Empty when the finished points do not hold both verdicts."""
    done = [r for r in rows if r.get("status") == "done" and r.get("verdict") in LABELS]
    if len({r["verdict"] for r in done}) < 2:
        return []
    out = []
    for column in [*SCORED_COLUMNS, *refined_columns(rows)]:
        scored = [(r["verdict"], _number(r.get(column))) for r in done]
        pizza = [v for label, v in scored if label == "pizza" and v is not None]
        clock = [v for label, v in scored if label == "clock" and v is not None]
        if not pizza or not clock:
            continue
        low, high = auroc_interval(pizza, clock)
        entry = {"column": column, "n_pizza": len(pizza), "n_clock": len(clock), "auroc": auroc(pizza, clock),
                 "low": low, "high": high, "pizza_mean": float(np.mean(pizza)), "clock_mean": float(np.mean(clock))}
        if column == "llc_mean":  # λ̂ has a status: the same AUROC over the points whose estimate is ok alone
            ok = [(label, v) for (label, v), r in zip(scored, done) if v is not None and r.get("llc_status") == "ok"]
            ok_pizza, ok_clock = ([v for label, v in ok if label == kind] for kind in LABELS)
            entry |= {"n_pizza_ok": len(ok_pizza), "n_clock_ok": len(ok_clock),
                      "auroc_ok_only": auroc(ok_pizza, ok_clock) if ok_pizza and ok_clock else None}
        out.append(entry)
    return out
