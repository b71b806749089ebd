"""search_budgets: one shared cache, per-budget bests, the Pareto front."""

import pytest

from espnet_omni.evolutionary_search import (
    EvolutionConfig,
    EvolutionSearch,
    pareto_front,
    search_budgets,
)
from espnet_omni.evolutionary_search.toy import ToyProblem, brute_force

CHOICES = [[0.0, 0.2, 0.4, 0.6, 0.8], [0.0, 0.25, 0.5, 0.75], [0.0, 0.3, 0.6, 0.9]]
TOY = ToyProblem(sizes=(5.0, 3.0, 2.0), weights=(1.0, 2.7, 4.3))
BUDGETS = [8.0, 3.0, 5.5]
CFG = EvolutionConfig(population=6, generations=5, seed=0, progress=False)


class Counting:
    def __init__(self, fail=False):
        self.calls = []
        self.fail = fail

    def __call__(self, c):
        if self.fail:
            raise AssertionError(f"re-scored {c}")
        self.calls.append(c)
        return TOY.score(c)


@pytest.mark.parametrize("fill", [True, False])
def test_sweep_shares_cache_and_matches_lone_runs(fill):
    cfg = EvolutionConfig.from_dict({**CFG.to_dict(), "fill_budget": fill})
    score = Counting()
    sweep = search_budgets(BUDGETS, CHOICES, TOY.cost, score, cfg)
    assert sorted(sweep.best) == sorted(BUDGETS) == sorted(sweep.runs)
    assert len(score.calls) == len(set(score.calls)) == sweep.n_evaluations
    lone_total = 0
    for b in BUDGETS:
        lone = EvolutionSearch(CHOICES, TOY.cost, TOY.score, cfg).run(b)
        lone_total += lone.n_evaluations
        assert sweep.runs[b].candidate == lone.candidate
        assert sweep.best[b].cost <= b
        assert sweep.best[b].score <= sweep.runs[b].score
        assert sweep.best[b].score == pytest.approx(brute_force(CHOICES, TOY, b).score)
    # Filled candidates sit on their own budget's boundary, so only unfilled
    # runs are sure to meet the same candidate under two budgets.
    assert sweep.n_evaluations < lone_total if not fill else sweep.n_evaluations <= lone_total


def test_front_is_front_of_everything_evaluated():
    score = Counting()
    sweep = search_budgets(BUDGETS, CHOICES, TOY.cost, score, CFG)
    everything = [(TOY.cost(c), TOY.score(c), c) for c in score.calls]
    assert sweep.front == pareto_front(everything)
    assert len(sweep.front) >= 3


def test_sweep_resumes_from_cache_file(tmp_path):
    path = tmp_path / "scores.jsonl"
    first = search_budgets(BUDGETS, CHOICES, TOY.cost, Counting(), CFG, cache_path=path)
    again = search_budgets(BUDGETS, CHOICES, TOY.cost, Counting(fail=True), CFG, cache_path=path)
    assert again.n_evaluations == 0
    assert again.best == first.best and again.front == first.front


def test_impossible_budget_raises_before_scoring():
    score = Counting()
    msg = r"budget 1 is impossible.*minimum achievable cost is 1\.95"
    with pytest.raises(ValueError, match=msg):
        search_budgets([5.0, 1.0], CHOICES, TOY.cost, score, CFG)
    assert score.calls == []


@pytest.mark.parametrize(
    "budgets,match",
    [([], "non-empty"), ([1.0, 1.0], "twice"), ([float("inf")], "finite"), (["3"], "finite")],
)
def test_bad_budgets_raise(budgets, match):
    with pytest.raises(ValueError, match=match):
        search_budgets(budgets, CHOICES, TOY.cost, TOY.score, CFG)
