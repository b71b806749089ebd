"""A synthetic search problem with a known answer, for tests and demos.

Cost is the kept size, ``sum_i (1 - s_i) * size_i`` (what non-zero
parameters are for per-layer sparsities ``s_i``); score is a convex loss that
grows with sparsity, ``sum_i weight_i * s_i ** 2``. The best candidate under a
budget on a small space is found exactly by :func:`brute_force`.

>>> toy = ToyProblem(sizes=(4.0, 2.0), weights=(1.0, 3.0))
>>> toy.cost((0.5, 0.0)), toy.score((0.5, 0.0))
(4.0, 0.25)
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from espnet_omni.evolutionary_search.pareto import ParetoPoint, best_within


@dataclass(frozen=True)
class ToyProblem:
    """Per-dimension sizes (cost weights) and loss weights.

    Attributes:
        sizes: parameters per dimension (> 0).
        weights: loss sensitivity per dimension (>= 0).
    """

    sizes: tuple[float, ...]
    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.sizes) != len(self.weights) or not self.sizes:
            raise ValueError("sizes and weights must be non-empty and of equal length")
        if any(s <= 0 for s in self.sizes) or any(w < 0 for w in self.weights):
            raise ValueError("sizes must be > 0 and weights >= 0")

    def cost(self, candidate: Sequence[float]) -> float:
        """Kept parameters: ``sum (1 - s_i) * size_i``; non-increasing in each s_i."""
        return float(sum((1.0 - s) * n for s, n in zip(candidate, self.sizes, strict=True)))

    def score(self, candidate: Sequence[float]) -> float:
        """Convex loss ``sum weight_i * s_i**2``; 0 for the dense candidate."""
        return float(sum(w * s * s for s, w in zip(candidate, self.weights, strict=True)))


def brute_force(
    choices: Sequence[Sequence[float]], problem: ToyProblem, budget: float
) -> ParetoPoint | None:
    """Exhaustive best point under ``budget`` (only for tiny spaces)."""
    points = [
        ParetoPoint(problem.cost(c), problem.score(c), tuple(float(v) for v in c))
        for c in itertools.product(*choices)
    ]
    return best_within(points, budget)
