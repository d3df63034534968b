"""Known learning coefficients, for validating the estimator (REFERENCE §3)."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Sequence


def true_llc_dln(widths: Sequence[int], rank: int) -> float:
    """RLCT of a deep linear network y = W_L ··· W_1 x with layer widths H_1 (input), ...,
    H_{L+1} (output) and a true product of rank ``rank`` (Aoyagi 2024, Theorem 1; REFERENCE §3)."""
    widths = [int(h) for h in widths]
    if len(widths) < 2:
        raise ValueError("a deep linear network needs at least an input and an output width")
    if not 0 <= rank <= min(widths):
        raise ValueError(f"rank={rank} must lie in 0..{min(widths)} (the narrowest width)")
    deltas = sorted(h - rank for h in widths)
    for k in range(2, len(deltas) + 1):
        chosen, rest = deltas[:k], deltas[k:]
        ell, total = k - 1, sum(chosen)
        if rest and not max(chosen) < min(rest):
            continue
        if total < ell * max(chosen):
            continue
        if rest and not total < ell * min(rest):
            continue
        a = total - (math.ceil(total / ell) - 1) * ell
        pairs = sum(chosen[i] * chosen[j] for i in range(k) for j in range(i + 1, k))
        exact = (  # in rationals, so an integer λ reads as one (46, not 45.99999999999999)
            Fraction(rank * (widths[0] + widths[-1]) - rank**2, 2)
            + Fraction(a * (ell - a), 4 * ell)
            - Fraction(ell - 1, 4 * ell) * total**2
            + Fraction(pairs, 2)
        )
        return float(exact)
    raise AssertionError(f"no index set satisfies Aoyagi's conditions for {widths}, rank {rank}")


def true_llc_reduced_rank(m_in: int, hidden: int, n_out: int, rank: int) -> float:
    """RLCT of reduced-rank regression y = B A x, A: hidden x m_in, B: n_out x hidden, true rank
    ``rank`` (Aoyagi & Watanabe 2005, Theorem 1)."""
    m, h, n, r = m_in, hidden, n_out, rank
    if n + r <= m + h and m + r <= n + h and h + r <= m + n:
        odd = (m + h + n + r) % 2
        return (2 * (h + r) * (m + n) - (m - n) ** 2 - (h + r) ** 2 + odd) / 8
    if m + h < n + r:
        return (h * m - h * r + n * r) / 2
    if n + h < m + r:
        return (h * n - h * r + m * r) / 2
    return m * n / 2
