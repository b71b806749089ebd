"""Search several budgets with one shared score cache; return the Pareto front.

Each budget runs its own :class:`EvolutionSearch` with the same config and
seed, so a budget's run is exactly what a stand-alone run would give; the
shared caches only save evaluations (a candidate scored for one budget is not
scored again for another). Afterwards each budget's answer is the best of
*everything* evaluated that fits it, which can only improve on its own run.

Usage::

    sweep = search_budgets([1e6, 2e6, 4e6], choices, cost_fn, score_fn,
                           EvolutionConfig(seed=0),
                           cache_path="exp/search/scores.jsonl")
    sweep.best[2e6].candidate, sweep.front
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from espnet_omni.evolutionary_search.cache import Candidate, ScoreCache
from espnet_omni.evolutionary_search.evolution import EvolutionConfig, EvolutionSearch, SearchResult
from espnet_omni.evolutionary_search.pareto import ParetoPoint, best_within, pareto_front


@dataclass
class BudgetSweep:
    """Outcome of :func:`search_budgets`.

    Attributes:
        best: budget -> lowest-score point with ``cost <= budget`` among all
            candidates evaluated (any budget's run, or the cache file).
        runs: budget -> that budget's own :class:`SearchResult`.
        front: Pareto front (cost up, score down) of everything evaluated.
        n_evaluations: score-function calls made by the whole sweep.
    """

    best: dict[float, ParetoPoint] = field(default_factory=dict)
    runs: dict[float, SearchResult] = field(default_factory=dict)
    front: list[ParetoPoint] = field(default_factory=list)
    n_evaluations: int = 0


def _check_budgets(budgets: Sequence[float]) -> list[float]:
    if isinstance(budgets, (str, bytes)) or len(budgets) == 0:
        raise ValueError("budgets must be a non-empty list of numbers")
    out = []
    for b in budgets:
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b):
            raise ValueError(f"budgets holds {b!r}: every budget must be a finite number")
        out.append(float(b))
    if len(set(out)) != len(out):
        raise ValueError(f"budgets {list(budgets)} holds a value twice")
    return sorted(out)


def search_budgets(
    budgets: Sequence[float],
    choices: Sequence[Sequence[float]],
    cost_fn: Callable[[Candidate], float],
    score_fn: Callable[[Candidate], float],
    config: EvolutionConfig | None = None,
    *,
    cache_path: str | os.PathLike | None = None,
) -> BudgetSweep:
    """Run one evolutionary search per budget, sharing the score cache.

    Args:
        budgets: cost budgets (distinct, finite); each must be reachable.
        choices, cost_fn, score_fn, config: as for :class:`EvolutionSearch`.
        cache_path: JSON-lines score cache shared by all budgets and
            across processes (resume by calling again with the same path).

    Raises:
        ValueError: a budget is below the minimum achievable cost (checked
            for all budgets before anything is scored), or bad arguments.
    """
    ordered = _check_budgets(budgets)
    score_cache = ScoreCache(score_fn, cache_path, name="score")
    search = EvolutionSearch(choices, cost_fn, score_cache, config)
    for b in ordered:
        search.check_budget(b)

    sweep = BudgetSweep()
    for b in ordered:
        sweep.runs[b] = search.run(b)

    # Cache-file entries of another length (another search space) are skipped.
    n_dims = len(search.choices)
    everything = [
        ParetoPoint(search.cost(c), s, c) for c, s in score_cache.items() if len(c) == n_dims
    ]
    for b in ordered:
        best = best_within(everything, b)
        own = sweep.runs[b].best
        # Keep the run's own answer on a tie so a sweep equals lone runs.
        sweep.best[b] = own if (own.score, own.cost) <= (best.score, best.cost) else best
    sweep.front = pareto_front(everything)
    sweep.n_evaluations = score_cache.n_evaluations
    return sweep
