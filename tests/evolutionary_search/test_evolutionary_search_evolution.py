"""EvolutionSearch and EvolutionConfig on a synthetic problem with a known answer."""

import itertools
import subprocess
import sys

import pytest

from espnet_omni.evolutionary_search import EvolutionConfig, EvolutionSearch
from espnet_omni.evolutionary_search.evolution import validate_choices
from espnet_omni.evolutionary_search.toy import ToyProblem, brute_force

CHOICES = [[0.0, 0.2, 0.4, 0.6, 0.8], [0.0, 0.25, 0.5, 0.75], [0.0, 0.3, 0.6, 0.9]]
TOY = ToyProblem(sizes=(5.0, 3.0, 2.0), weights=(1.0, 2.7, 4.3))
BUDGETS = [2.0, 3.0, 4.5, 6.0, 7.5, 9.0, 10.0]


def small(**kw):
    base = dict(population=6, generations=6, seed=0, progress=False)
    base.update(kw)
    return EvolutionConfig(**base)


def big_problem(n_dims=20):
    choices = [[i / 10 for i in range(10)]] * n_dims
    toy = ToyProblem(
        sizes=tuple(1.0 + (7 * i % 5) for i in range(n_dims)),
        weights=tuple(0.5 + (3 * i % 7) / 2 for i in range(n_dims)),
    )
    return choices, toy


# -- config -------------------------------------------------------------------
def test_config_yaml_round_trip(tmp_path):
    cfg = EvolutionConfig(population=10, parents_fraction=0.5, mutation_prob=1, seed=3)
    assert isinstance(cfg.mutation_prob, float)
    back = EvolutionConfig.from_yaml(cfg.to_yaml(tmp_path / "evo.yaml"))
    assert back == cfg
    assert EvolutionConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "key,value",
    [
        ("population", 1),
        ("population", 2.5),
        ("population", True),
        ("generations", -1),
        ("parents_fraction", 0.0),
        ("parents_fraction", 1.0),
        ("parents_fraction", float("nan")),
        ("mutation_prob", 1.5),
        ("crossover_prob", -0.1),
        ("crossover_prob", "0.5"),
        ("seed", -1),
        ("max_tries_per_child", 0),
        ("max_tries_per_child", 1001),
        ("fill_budget", 1),
        ("include_uniform", "yes"),
        ("progress", None),
    ],
)
def test_config_bad_value_names_key_and_range(key, value):
    with pytest.raises(ValueError, match=rf"EvolutionConfig\.{key}=.*expected"):
        EvolutionConfig(**{key: value})


def test_config_unknown_key_lists_valid_keys(tmp_path):
    msg = r"unknown EvolutionConfig key\(s\) \['popsize'\].*population"
    with pytest.raises(ValueError, match=msg):
        EvolutionConfig.from_dict({"popsize": 4})
    path = tmp_path / "bad.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="expected a YAML mapping"):
        EvolutionConfig.from_yaml(path)


def test_n_parents_leaves_room_for_children():
    assert EvolutionConfig(population=2, parents_fraction=0.99).n_parents == 1
    assert EvolutionConfig(population=16, parents_fraction=0.25).n_parents == 4
    assert EvolutionConfig(population=16, parents_fraction=0.01).n_parents == 1


@pytest.mark.parametrize(
    "choices,match",
    [
        ([], "at least one dimension"),
        ([[]], r"choices\[0\] must be a non-empty"),
        ([[0.0], [1.0]], r"choices\[1\] holds 1.0"),
        ([[-0.1]], r"\[0, 1\)"),
        ([[0.1, 0.1]], "twice"),
        ([["0.1"]], r"\[0, 1\)"),
    ],
)
def test_bad_choices_raise(choices, match):
    with pytest.raises(ValueError, match=match):
        validate_choices(choices)


def test_choices_sorted_densest_first():
    search = EvolutionSearch([[0.5, 0.0], [0.9, 0.1]], TOY.cost, TOY.score, small())
    assert search.densest == (0.0, 0.1) and search.sparsest == (0.5, 0.9)


# -- budget -------------------------------------------------------------------
def test_impossible_budget_names_budget_and_minimum():
    search = EvolutionSearch(CHOICES, TOY.cost, TOY.score, small())
    min_cost = TOY.cost(search.sparsest)
    with pytest.raises(ValueError, match=rf"budget 1\.9 .*minimum achievable cost is {min_cost:g}"):
        search.run(1.9)
    with pytest.raises(ValueError, match="budget must be a number"):
        search.run(float("nan"))


@pytest.mark.parametrize("fill", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_results_respect_budget(seed, fill):
    choices, toy = big_problem()
    search = EvolutionSearch(choices, toy.cost, toy.score, small(seed=seed, fill_budget=fill))
    for budget in [search.min_cost, search.min_cost + 1.0, 30.0, 55.0, 200.0]:
        result = search.run(budget)
        assert result.cost <= budget and toy.cost(result.candidate) <= budget
        assert all(p.cost <= budget for p in result.evaluated)
        assert all(v in dim for v, dim in zip(result.candidate, choices))
        assert result.history == sorted(result.history, reverse=True)
        assert result.score == min(p.score for p in result.evaluated)


def test_tight_budget_is_reached_without_rejection_sampling():
    # With 20 dims a uniform draw fits a budget near the minimum with
    # probability ~1e-19; the repair step must still fill the population.
    choices, toy = big_problem()
    search = EvolutionSearch(choices, toy.cost, toy.score, small(generations=2))
    result = search.run(search.min_cost + 0.5)
    assert result.cost <= search.min_cost + 0.5
    assert len(result.evaluated) >= 3
    assert search.run(search.min_cost).candidate == search.sparsest


def test_loose_budget_gives_densest():
    search = EvolutionSearch(CHOICES, TOY.cost, TOY.score, small())
    assert search.run(1e9).candidate == search.densest


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("fill,uniform", [(True, True), (False, False)])
def test_finds_brute_force_optimum(budget, fill, uniform):
    n_space = len(list(itertools.product(*CHOICES)))
    search = EvolutionSearch(
        CHOICES, TOY.cost, TOY.score,
        small(population=8, generations=8, fill_budget=fill, include_uniform=uniform),
    )
    result = search.run(budget)
    best = brute_force(CHOICES, TOY, budget)
    assert result.score == pytest.approx(best.score, abs=1e-12)
    assert search.n_evaluations < n_space  # found by search, not by enumeration


def test_same_seed_same_result_other_seed_other_path():
    choices, toy = big_problem()

    def run(seed):
        return EvolutionSearch(choices, toy.cost, toy.score, small(seed=seed)).run(40.0)

    a, b, c = run(7), run(7), run(8)
    assert (a.candidate, a.history, a.evaluated) == (b.candidate, b.history, b.evaluated)
    assert a.evaluated != c.evaluated


# -- caching ------------------------------------------------------------------
class CountingScore:
    """Score function recording its calls; optionally fails after ``limit``."""

    def __init__(self, limit=None):
        self.calls = []
        self.limit = limit

    def __call__(self, candidate):
        if self.limit is not None and len(self.calls) >= self.limit:
            raise KeyboardInterrupt("simulated interruption")
        self.calls.append(candidate)
        return TOY.score(candidate) if len(candidate) == 3 else sum(c * c for c in candidate)


def test_each_candidate_scored_once():
    choices, toy = big_problem()
    score = CountingScore()
    search = EvolutionSearch(choices, toy.cost, score, small(generations=8))
    result = search.run(40.0)
    assert len(score.calls) == len(set(score.calls)) == search.n_evaluations
    assert result.n_evaluations == search.n_evaluations == len(result.evaluated)
    again = search.run(40.0)  # same seed: same path, all cached
    assert len(score.calls) == search.n_evaluations
    assert again.n_evaluations == 0 and again.candidate == result.candidate


def test_resume_from_cache_file_scores_nothing_twice(tmp_path):
    choices, toy = big_problem()
    path = tmp_path / "scores.jsonl"
    cfg = small(generations=8)
    full_score = CountingScore()
    full = EvolutionSearch(choices, toy.cost, full_score, cfg).run(40.0)

    first = CountingScore(limit=len(full_score.calls) // 2)
    with pytest.raises(KeyboardInterrupt):
        EvolutionSearch(choices, toy.cost, first, cfg, cache_path=path).run(40.0)
    assert len(path.read_text().splitlines()) == len(first.calls)

    second = CountingScore()
    resumed = EvolutionSearch(choices, toy.cost, second, cfg, cache_path=path).run(40.0)
    assert not set(first.calls) & set(second.calls)
    assert len(first.calls) + len(second.calls) == len(full_score.calls)
    assert (resumed.candidate, resumed.history) == (full.candidate, full.history)

    third = CountingScore(limit=0)  # raises if called at all
    done = EvolutionSearch(choices, toy.cost, third, cfg, cache_path=path).run(40.0)
    assert done.n_evaluations == 0 and done.candidate == full.candidate


def test_cache_path_with_score_cache_is_rejected(tmp_path):
    from espnet_omni.evolutionary_search import ScoreCache

    with pytest.raises(ValueError, match="cache_path"):
        EvolutionSearch(
            CHOICES, TOY.cost, ScoreCache(TOY.score), small(), cache_path=tmp_path / "x"
        )


def test_nan_score_raises():
    search = EvolutionSearch(CHOICES, TOY.cost, lambda c: float("nan"), small())
    with pytest.raises(ValueError, match="NaN"):
        search.run(5.0)


# -- progress and isolation -----------------------------------------------------
def test_progress_bar_can_be_disabled(capsys):
    EvolutionSearch(CHOICES, TOY.cost, TOY.score, small(progress=False)).run(5.0)
    assert "gen" not in capsys.readouterr().err
    EvolutionSearch(CHOICES, TOY.cost, TOY.score, small(progress=True)).run(5.0)
    assert "search budget=5" in capsys.readouterr().err


def test_search_imports_no_torch_espnet_or_sibling_packages():
    code = (
        "import sys, espnet_omni.evolutionary_search.report, espnet_omni.evolutionary_search.toy\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'espnet', 'espnet2')\n"
        "       or (m.startswith('espnet_omni.')\n"
        "           and not m.startswith('espnet_omni.evolutionary_search'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
