"""The synthetic problem used by the search tests."""

import pytest

from espnet_omni.evolutionary_search.toy import ToyProblem, brute_force


def test_toy_cost_score_and_brute_force():
    toy = ToyProblem(sizes=(4.0, 2.0), weights=(1.0, 3.0))
    assert toy.cost((0.0, 0.0)) == 6.0 and toy.score((0.0, 0.0)) == 0.0
    assert toy.cost((0.5, 0.5)) == 3.0 and toy.score((0.5, 0.5)) == 1.0
    # budget 4: (0.5, 0) costs 4 and scores 0.25; (0, 0.5) costs 5, too big.
    best = brute_force([[0.0, 0.5], [0.0, 0.5]], toy, 4.0)
    assert best.candidate == (0.5, 0.0) and best.score == 0.25
    assert brute_force([[0.0, 0.5], [0.0, 0.5]], toy, 2.9) is None


@pytest.mark.parametrize("sizes,weights", [((), ()), ((1.0,), (1.0, 2.0)), ((0.0,), (1.0,)),
                                           ((1.0,), (-1.0,))])
def test_toy_bad_values(sizes, weights):
    with pytest.raises(ValueError):
        ToyProblem(sizes, weights)
