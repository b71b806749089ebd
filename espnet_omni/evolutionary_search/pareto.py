"""Pareto front of (cost, score) points, both lower-is-better.

Pure functions over :class:`ParetoPoint` (a ``NamedTuple``, so a plain
``(cost, score, candidate)`` tuple works everywhere a point is expected).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, NamedTuple


class ParetoPoint(NamedTuple):
    """One evaluated sub-network.

    Attributes:
        cost: the budget measure (non-zero parameters, bytes, ...); lower is
            smaller.
        score: the dev-set proxy (WER, loss); lower is better.
        candidate: the per-dimension sparsity vector.
    """

    cost: float
    score: float
    candidate: Any


def _as_points(points: Iterable[tuple]) -> list[ParetoPoint]:
    out = []
    for i, p in enumerate(points):
        cost, score, candidate = p
        cost, score = float(cost), float(score)
        if math.isnan(cost) or math.isnan(score):
            raise ValueError(f"point {i} has a NaN cost or score: {p!r}")
        out.append(ParetoPoint(cost, score, candidate))
    return out


def pareto_front(points: Iterable[tuple]) -> list[ParetoPoint]:
    """Non-dominated points, sorted by increasing cost.

    ``p`` dominates ``q`` when ``p.cost <= q.cost`` and ``p.score <= q.score``
    with at least one strict. Along the returned front cost strictly
    increases and score strictly decreases. Of several points with the same
    (cost, score) only the first in input order is kept, so the front has no
    duplicates and the result does not depend on how candidates compare.

    >>> pareto_front([(3, 1.0, "c"), (1, 3.0, "a"), (2, 3.0, "b"), (2, 2.0, "d")])
    [ParetoPoint(cost=1.0, score=3.0, candidate='a'), \
ParetoPoint(cost=2.0, score=2.0, candidate='d'), \
ParetoPoint(cost=3.0, score=1.0, candidate='c')]
    """
    ranked = sorted(_as_points(points), key=lambda p: (p.cost, p.score))  # stable
    front: list[ParetoPoint] = []
    for p in ranked:
        # Equal cost sorts by score, so a later point of the same cost never
        # has a lower score than the one already kept.
        if not front or p.score < front[-1].score:
            front.append(p)
    return front


def best_within(points: Iterable[tuple], budget: float) -> ParetoPoint | None:
    """Lowest-score point with ``cost <= budget`` (ties: lower cost, then first).

    Returns None when no point fits the budget.

    >>> best_within([(1, 3.0, "a"), (2, 2.0, "b"), (3, 1.0, "c")], 2.5)
    ParetoPoint(cost=2.0, score=2.0, candidate='b')
    """
    fitting = [p for p in _as_points(points) if p.cost <= budget]
    if not fitting:
        return None
    return min(fitting, key=lambda p: (p.score, p.cost))
