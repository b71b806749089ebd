"""Evolutionary search over per-layer sparsity vectors under a cost budget.

Model-free: the search sees only a list of allowed values per dimension, a
cost function (the budget measure: non-zero parameters, bytes, latency;
lower is smaller) and a score function (dev-set WER or loss; lower is
better), as in once-for-all's ``EvolutionFinder(efficiency_predictor,
accuracy_predictor)``. Every loop is capped; nothing samples until lucky.

Assumption about ``cost_fn``: raising the sparsity of any one dimension never
raises the cost. Then the sparsest candidate (every dimension at its largest
choice) is the cheapest, which gives the minimum achievable cost and makes
the "repair" below always end inside the budget.

Usage::

    search = EvolutionSearch(choices, cost_fn, score_fn, EvolutionConfig(seed=0),
                             cache_path="exp/search/scores.jsonl")
    result = search.run(budget=2.0e6)
    result.candidate, result.cost, result.score
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from espnet_omni.evolutionary_search.cache import Candidate, ScoreCache
from espnet_omni.evolutionary_search.pareto import ParetoPoint

logger = logging.getLogger(__name__)

Index = tuple[int, ...]  # one index into each dimension's sorted choices

# (lower, upper, lower_inclusive, upper_inclusive) per numeric field.
_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "population": (2, 10_000, True, True),
    "generations": (0, 10_000, True, True),
    "parents_fraction": (0.0, 1.0, False, False),
    "mutation_prob": (0.0, 1.0, True, True),
    "crossover_prob": (0.0, 1.0, True, True),
    "seed": (0, 2**32 - 1, True, True),
    # Capped: each try costs a draw and up to sum(len(dim)) cost evaluations.
    "max_tries_per_child": (1, 1000, True, True),
}
_INT_FIELDS = ("population", "generations", "seed", "max_tries_per_child")


def _range_text(name: str) -> str:
    lo, hi, lo_in, hi_in = _RANGES[name]
    kind = "an integer" if name in _INT_FIELDS else "a number"
    return f"{kind} in {'[' if lo_in else '('}{lo}, {hi}{']' if hi_in else ')'}"


@dataclass
class EvolutionConfig:
    """Hyper-parameters of :class:`EvolutionSearch`.

    Defaults are sized for a real dev-set score (one decode per candidate):
    at most ``population * (1 + generations * (1 - parents_fraction))``
    = 16 * (1 + 12 * 0.75) = 160 score evaluations per budget.

    Attributes:
        population: candidates alive per generation.
        generations: evolution steps after the random initial population
            (0 = random search over ``population`` candidates).
        parents_fraction: top fraction of the population kept as parents
            (elitism); the rest of the next population is their children.
            0.25 as once-for-all's ``parent_ratio``.
        mutation_prob: per-dimension probability that mutation re-draws the
            value uniformly from that dimension's choices (0.1 as
            once-for-all's ``mutate_prob``).
        crossover_prob: probability that a child comes from uniform
            crossover of two parents (then mutated) rather than from mutating
            one parent (0.5 as once-for-all's ``1 - mutation_ratio``).
        seed: seed of the search's own ``random.Random``; equal seeds,
            equal functions and equal budgets give equal results.
        max_tries_per_child: draws allowed to find a child (or an initial
            candidate) not yet evaluated in this run. Every draw is made to
            fit the budget first: repaired (random dimensions made sparser
            until the cost fits) and, with ``fill_budget``, filled.
        fill_budget: after repair, make random dimensions denser while the
            cost still fits, so candidates spend their budget (where the
            best ones are when denser scores better). Off: plain repair.
        include_uniform: start the population with the densest uniform
            sparsity candidate that fits (filled), so the result is never
            worse than uniform pruning to the same budget.
        progress: show a tqdm bar over generations.
    """

    population: int = 16
    generations: int = 12
    parents_fraction: float = 0.25
    mutation_prob: float = 0.1
    crossover_prob: float = 0.5
    seed: int = 0
    max_tries_per_child: int = 50
    fill_budget: bool = True
    include_uniform: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        for name, (lo, hi, lo_in, hi_in) in _RANGES.items():
            value = getattr(self, name)
            is_int = isinstance(value, int) and not isinstance(value, bool)
            is_num = is_int or isinstance(value, float)
            ok = is_int if name in _INT_FIELDS else is_num
            if ok:  # NaN fails both comparisons, so it is out of range too
                ok = (lo <= value if lo_in else lo < value) and (
                    value <= hi if hi_in else value < hi
                )
            if not ok:
                raise ValueError(
                    f"EvolutionConfig.{name}={value!r} is out of range: "
                    f"expected {_range_text(name)}"
                )
            if name not in _INT_FIELDS:
                setattr(self, name, float(value))
        for name in ("fill_budget", "include_uniform", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"EvolutionConfig.{name}={getattr(self, name)!r}: expected true or false"
                )

    @property
    def n_parents(self) -> int:
        """Parents per generation: at least 1, at most ``population - 1``."""
        return min(self.population - 1, max(1, int(self.parents_fraction * self.population)))

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping, the inverse of :meth:`from_dict`."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "EvolutionConfig":
        """Build from a mapping; unknown keys raise naming the valid ones."""
        data = dict(data or {})
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise ValueError(f"unknown EvolutionConfig key(s) {unknown}; valid keys: {valid}")
        return cls(**data)

    def to_yaml(self, path: str | os.PathLike) -> Path:
        """Write as YAML; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "EvolutionConfig":
        """Read a YAML mapping written by :meth:`to_yaml` (or by hand)."""
        data = yaml.safe_load(Path(path).read_text())
        if data is not None and not isinstance(data, dict):
            raise ValueError(f"{path}: expected a YAML mapping, got {type(data).__name__}")
        return cls.from_dict(data)


@dataclass
class SearchResult:
    """Outcome of :meth:`EvolutionSearch.run` for one budget.

    Attributes:
        budget: the cost budget searched under.
        candidate: best sparsity vector found (cost <= budget).
        cost: its cost.
        score: its score (lower is better).
        history: best score after the initial population and after each
            generation (non-increasing, ``generations + 1`` entries).
        evaluated: every distinct candidate this run scored or found in the
            cache, in first-seen order; all fit the budget.
        n_evaluations: score-function calls made by this run (cache hits,
            including entries loaded from a cache file, do not count).
    """

    budget: float
    candidate: Candidate
    cost: float
    score: float
    history: list[float] = field(default_factory=list)
    evaluated: list[ParetoPoint] = field(default_factory=list)
    n_evaluations: int = 0

    @property
    def best(self) -> ParetoPoint:
        """The best candidate as a :class:`ParetoPoint`."""
        return ParetoPoint(self.cost, self.score, self.candidate)


def validate_choices(choices: Sequence[Sequence[float]]) -> tuple[tuple[float, ...], ...]:
    """Check the search space and return each dimension's choices sorted.

    Each dimension needs at least one distinct sparsity in ``[0, 1)``.
    After sorting, index 0 is the densest and the last index the sparsest.

    >>> validate_choices([[0.5, 0.0], [0.9]])
    ((0.0, 0.5), (0.9,))
    """
    if isinstance(choices, (str, bytes)) or len(choices) == 0:
        raise ValueError("choices must hold at least one dimension")
    out = []
    for d, dim in enumerate(choices):
        if isinstance(dim, (str, bytes)) or len(dim) == 0:
            raise ValueError(f"choices[{d}] must be a non-empty list of sparsities in [0, 1)")
        vals = []
        for v in dim:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
                raise ValueError(f"choices[{d}] holds {v!r}: every sparsity must be in [0, 1)")
            vals.append(float(v))
        if len(set(vals)) != len(vals):
            raise ValueError(f"choices[{d}]={list(dim)} holds a value twice")
        out.append(tuple(sorted(vals)))
    return tuple(out)


class EvolutionSearch:
    """Evolutionary search for the best-scoring candidate under a cost budget.

    Args:
        choices: per dimension (layer), the allowed sparsities in ``[0, 1)``.
        cost_fn: candidate tuple -> cost; non-increasing in each sparsity.
            Called often (every repair/fill step) and not memoised: it must
            be cheap (a parameter count, a latency lookup table); wrap an
            expensive one in ``functools.cache``.
        score_fn: candidate tuple -> score, lower is better. Memoised: each
            distinct candidate is scored once. Pass a :class:`ScoreCache` to
            share the cache between searches (e.g. several budgets).
        config: hyper-parameters; ``EvolutionConfig()`` when None.
        cache_path: JSON-lines file persisting scores across processes (only
            when ``score_fn`` is a plain callable; a :class:`ScoreCache`
            carries its own path).
    """

    def __init__(
        self,
        choices: Sequence[Sequence[float]],
        cost_fn: Callable[[Candidate], float],
        score_fn: Callable[[Candidate], float] | ScoreCache,
        config: EvolutionConfig | None = None,
        *,
        cache_path: str | os.PathLike | None = None,
    ) -> None:
        self.choices = validate_choices(choices)
        self.config = config if config is not None else EvolutionConfig()
        if not isinstance(self.config, EvolutionConfig):
            raise TypeError(f"config must be an EvolutionConfig, got {type(config).__name__}")
        if isinstance(score_fn, ScoreCache):
            if cache_path is not None:
                raise ValueError("cache_path is given but score_fn is already a ScoreCache")
            self.score_cache = score_fn
        else:
            self.score_cache = ScoreCache(score_fn, cache_path, name="score")
        self.cost_fn = cost_fn

    # -- search space ---------------------------------------------------------
    @property
    def n_evaluations(self) -> int:
        """Score-function calls made through this search's score cache."""
        return self.score_cache.n_evaluations

    @property
    def densest(self) -> Candidate:
        """Every dimension at its smallest sparsity."""
        return tuple(dim[0] for dim in self.choices)

    @property
    def sparsest(self) -> Candidate:
        """Every dimension at its largest sparsity (the cheapest candidate)."""
        return tuple(dim[-1] for dim in self.choices)

    @property
    def min_cost(self) -> float:
        """Cost of :attr:`sparsest`, the minimum achievable cost."""
        return self.cost(self.sparsest)

    def cost(self, candidate: Candidate) -> float:
        """``cost_fn(candidate)`` as a float; NaN raises."""
        value = float(self.cost_fn(candidate))
        if math.isnan(value):
            raise ValueError(f"cost function returned NaN for candidate {list(candidate)}")
        return value

    def _values(self, idx: Index) -> Candidate:
        return tuple(dim[i] for dim, i in zip(self.choices, idx))

    def _cost(self, idx: Index) -> float:
        return self.cost(self._values(idx))

    def check_budget(self, budget: float) -> float:
        """Return ``budget`` as float; raise ValueError if no candidate fits."""
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or math.isnan(budget):
            raise ValueError(f"budget must be a number, got {budget!r}")
        budget = float(budget)
        if budget < self.min_cost:
            raise ValueError(
                f"budget {budget:g} is impossible: the minimum achievable cost is "
                f"{self.min_cost:g} (every dimension at its sparsest choice)"
            )
        return budget

    # -- variation operators (all bounded) ------------------------------------
    def _sample(self, rng: random.Random) -> Index:
        return tuple(rng.randrange(len(dim)) for dim in self.choices)

    def _repair(self, idx: Index, budget: float, rng: random.Random) -> Index:
        """Raise random dimensions one step sparser until the cost fits.

        At most ``sum(len(dim) - 1)`` steps: it stops at the sparsest
        candidate at the latest, which fits (checked by ``check_budget``).
        """
        cur = list(idx)
        while self._cost(tuple(cur)) > budget:
            movable = [d for d, i in enumerate(cur) if i < len(self.choices[d]) - 1]
            if not movable:
                raise RuntimeError(
                    f"the sparsest candidate costs {self._cost(tuple(cur)):g} > budget "
                    f"{budget:g}: cost_fn is not deterministic"
                )
            cur[rng.choice(movable)] += 1
        return tuple(cur)

    def _fill(self, idx: Index, budget: float, rng: random.Random) -> Index:
        """Lower random dimensions one step denser while the cost still fits.

        Spends the budget left over: under a budget, denser is better for
        the score in the common case, so the best candidates sit on the
        budget boundary. A dimension whose next denser step does not fit is
        dropped for good (denser steps elsewhere only raise the cost), so
        this takes at most ``sum(len(dim) - 1) + n_dims`` cost evaluations.
        """
        cur = list(idx)
        open_dims = [d for d, i in enumerate(cur) if i > 0]
        while open_dims:
            d = rng.choice(open_dims)
            cur[d] -= 1
            if self._cost(tuple(cur)) > budget:
                cur[d] += 1
                open_dims.remove(d)
            elif cur[d] == 0:
                open_dims.remove(d)
        return tuple(cur)

    def _fit(self, idx: Index, budget: float, rng: random.Random) -> Index:
        """Repair ``idx`` into the budget, then fill it (if configured)."""
        idx = self._repair(idx, budget, rng)
        return self._fill(idx, budget, rng) if self.config.fill_budget else idx

    def _mutate(self, idx: Index, rng: random.Random) -> Index:
        p = self.config.mutation_prob
        return tuple(
            rng.randrange(len(dim)) if rng.random() < p else i
            for dim, i in zip(self.choices, idx)
        )

    @staticmethod
    def _crossover(a: Index, b: Index, rng: random.Random) -> Index:
        return tuple(x if rng.random() < 0.5 else y for x, y in zip(a, b))

    def _uniform(self, budget: float) -> Index:
        """Densest "uniform sparsity" candidate that fits: every dimension at
        its smallest choice ``>= t`` (its sparsest if none), for the smallest
        threshold ``t`` among all choices whose candidate fits the budget."""
        for t in sorted({v for dim in self.choices for v in dim}):
            idx = tuple(
                next((i for i, v in enumerate(dim) if v >= t), len(dim) - 1)
                for dim in self.choices
            )
            if self._cost(idx) <= budget:
                return idx
        return tuple(len(dim) - 1 for dim in self.choices)

    def _initial_population(self, budget: float, rng: random.Random) -> list[Index]:
        """Up to ``population`` distinct random candidates that fit the budget.

        Each draw is uniform over the choices and then fitted (repaired
        sparser until it fits, then filled denser), so even a budget near the
        minimum cost is reached without rejection sampling. Fewer than
        ``population`` come back only when ``max_tries_per_child`` draws per
        slot find no new candidate (a tiny space); the first such slot ends
        the sampling.
        """
        pop: list[Index] = []
        taken: set[Index] = set()
        if self.config.include_uniform:
            pop.append(self._fill(self._uniform(budget), budget, rng))
            taken.add(pop[0])
        for _ in range(self.config.population - len(pop)):
            for _ in range(self.config.max_tries_per_child):
                idx = self._fit(self._sample(rng), budget, rng)
                if idx not in taken:
                    pop.append(idx)
                    taken.add(idx)
                    break
            else:  # no new candidate in a whole slot: the space is exhausted
                break
        return pop

    def _child(
        self,
        parents: Sequence[Index],
        budget: float,
        rng: random.Random,
        seen: Container[Index],
        alive: Container[Index],
    ) -> Index | None:
        """One child that fits the budget, preferring one not seen this run.

        Each draw (crossover + mutation, or mutation alone) is fitted into
        the budget; up to ``max_tries_per_child`` draws look for a candidate
        not evaluated in this run. Failing that, the last draw is returned
        unless it is already alive; None means no child (tiny space).
        """
        child = parents[0]
        for _ in range(self.config.max_tries_per_child):
            if len(parents) >= 2 and rng.random() < self.config.crossover_prob:
                a, b = rng.sample(list(parents), 2)
                child = self._mutate(self._crossover(a, b, rng), rng)
            else:
                child = self._mutate(rng.choice(list(parents)), rng)
            child = self._fit(child, budget, rng)
            if child not in seen:
                return child
        return None if child in alive else child

    # -- the search -----------------------------------------------------------
    def run(self, budget: float) -> SearchResult:
        """Search for the lowest-score candidate with ``cost <= budget``.

        Raises:
            ValueError: ``budget`` is below :attr:`min_cost` (or not a number).
        """
        budget = self.check_budget(budget)
        cfg = self.config
        rng = random.Random(cfg.seed)
        calls_before = self.score_cache.n_evaluations
        points: dict[Index, ParetoPoint] = {}

        def evaluate(idx: Index) -> ParetoPoint:
            if idx not in points:
                values = self._values(idx)
                points[idx] = ParetoPoint(self._cost(idx), self.score_cache(values), values)
            return points[idx]

        def rank(idxs: Sequence[Index]) -> list[Index]:
            return sorted(idxs, key=lambda i: (evaluate(i).score, evaluate(i).cost, i))

        population = rank(self._initial_population(budget, rng))
        history = [evaluate(population[0]).score]
        bar = tqdm(
            range(cfg.generations),
            desc=f"search budget={budget:g}",
            unit="gen",
            disable=not cfg.progress,
        )
        for _ in bar:
            parents = population[: cfg.n_parents]
            alive = set(parents)
            children: list[Index] = []
            for _ in range(cfg.population - len(parents)):
                child = self._child(parents, budget, rng, points, alive)
                if child is None:  # nothing new near the parents: stop early
                    break
                alive.add(child)
                children.append(child)
                evaluate(child)
            population = rank(parents + children)
            history.append(evaluate(population[0]).score)
            bar.set_postfix(best=f"{history[-1]:.4g}", scored=len(points))
        bar.close()

        best = evaluate(population[0])
        n_calls = self.score_cache.n_evaluations - calls_before
        logger.info(
            "budget %g: best score %g at cost %g; %d candidates, %d scored now",
            budget, best.score, best.cost, len(points), n_calls,
        )
        return SearchResult(
            budget=budget,
            candidate=best.candidate,
            cost=best.cost,
            score=best.score,
            history=history,
            evaluated=list(points.values()),
            n_evaluations=n_calls,
        )
