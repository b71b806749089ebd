"""ScoreCache: memoisation and the JSON-lines file."""

import json

import pytest

from espnet_omni.evolutionary_search import ScoreCache


def counting(values):
    calls = []

    def fn(c):
        calls.append(c)
        return values.get(c, sum(c))

    return fn, calls


def test_memoises_and_counts():
    fn, calls = counting({})
    cache = ScoreCache(fn)
    assert cache((0.1, 0.2)) == pytest.approx(0.3)
    assert cache([0.1, 0.2]) == pytest.approx(0.3)  # list and tuple are one key
    assert cache((0, 1)) == 1.0
    assert calls == [(0.1, 0.2), (0.0, 1.0)] and cache.n_evaluations == 2 == len(cache)
    assert (0.1, 0.2) in cache and cache.get((0.5,)) is None
    assert [c for c, _ in cache.items()] == [(0.1, 0.2), (0.0, 1.0)]


def test_file_round_trip_is_bit_exact(tmp_path):
    path = tmp_path / "sub" / "scores.jsonl"
    cand = (0.1, 1 / 3, 0.7)
    first = ScoreCache(lambda c: 0.1 + 0.2, path)
    first(cand)
    again = ScoreCache(lambda c: pytest.fail("must not re-score"), path)
    assert again(cand) == 0.1 + 0.2 and again.n_evaluations == 0 and len(again) == 1


def test_truncated_last_line_is_dropped_and_appends_stay_clean(tmp_path):
    path = tmp_path / "scores.jsonl"
    path.write_text('{"candidate": [0.0], "score": 1.0}\n{"candidate": [0.5], "sc')
    cache = ScoreCache(lambda c: 7.0, path)
    assert len(cache) == 1
    cache((0.5,))
    lines = path.read_text().splitlines()
    assert [json.loads(x)["score"] for x in lines] == [1.0, 7.0]


def test_missing_trailing_newline_is_repaired(tmp_path):
    path = tmp_path / "scores.jsonl"
    path.write_text('{"candidate": [0.0], "score": 1.0}')
    ScoreCache(lambda c: 2.0, path)((0.5,))
    assert len(ScoreCache(lambda c: 0.0, path)) == 2


@pytest.mark.parametrize(
    "bad",
    ['not json', '{"candidate": [0.0]}', '{"candidate": ["x"], "score": 1}',
     '{"candidate": [0.0], "score": true}', '{"candidate": [0], "score": 1, "extra": 2}'],
)
def test_corrupt_middle_line_raises_with_line_number(tmp_path, bad):
    path = tmp_path / "scores.jsonl"
    path.write_text(bad + '\n{"candidate": [0.0], "score": 1.0}\n')
    with pytest.raises(ValueError, match=r"scores\.jsonl:1: bad cache entry"):
        ScoreCache(lambda c: 0.0, path)


def test_nan_is_not_cached():
    cache = ScoreCache(lambda c: float("nan"))
    with pytest.raises(ValueError, match=r"NaN for candidate \[0.5\]"):
        cache((0.5,))
    assert len(cache) == 0
