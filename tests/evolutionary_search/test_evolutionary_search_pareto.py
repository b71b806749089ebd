"""pareto_front and best_within on hand-derivable points."""

import itertools
import random

import pytest

from espnet_omni.evolutionary_search import ParetoPoint, best_within, pareto_front


def test_front_on_hand_points():
    points = [
        (4.0, 1.0, "d"),
        (1.0, 5.0, "a"),
        (2.0, 5.0, "dominated: same score, more cost"),
        (2.0, 3.0, "b"),
        (2.0, 3.5, "dominated: same cost, worse score"),
        (3.0, 4.0, "dominated by b"),
        (3.0, 2.0, "c"),
        (5.0, 1.0, "dominated: same score as d, more cost"),
    ]
    front = pareto_front(points)
    assert [p.candidate for p in front] == ["a", "b", "c", "d"]
    assert front[1] == ParetoPoint(2.0, 3.0, "b")


def test_front_keeps_first_of_equal_points_and_handles_empty():
    assert pareto_front([]) == []
    front = pareto_front([(1, 1, "first"), (1, 1, "second")])
    assert front == [ParetoPoint(1.0, 1.0, "first")]


def test_front_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        pareto_front([(1.0, float("nan"), "x")])


def test_front_matches_pairwise_dominance_on_random_points():
    rng = random.Random(0)
    points = [(rng.randint(0, 9), rng.randint(0, 9), i) for i in range(60)]

    def dominated(q):
        return any(
            p[0] <= q[0] and p[1] <= q[1] and (p[0], p[1]) != (q[0], q[1]) for p in points
        )

    expected = sorted({(c, s) for c, s, _ in points if not dominated((c, s, None))})
    front = pareto_front(points)
    assert [(p.cost, p.score) for p in front] == expected
    for a, b in itertools.pairwise(front):
        assert a.cost < b.cost and a.score > b.score


def test_best_within():
    points = [(1, 3.0, "a"), (2, 2.0, "b"), (2.5, 2.0, "b2"), (3, 1.0, "c")]
    assert best_within(points, 0.5) is None
    assert best_within(points, 1).candidate == "a"
    assert best_within(points, 2.9).candidate == "b"  # tie on score: lower cost
    assert best_within(points, 3).candidate == "c"
