"""Cubic schedule endpoints, monotonicity, quantisation and errors."""

import pytest

from espnet_omni.sparsity.schedule import CubicSchedule


def test_endpoints_and_clamp():
    s = CubicSchedule(0.1, 0.8, begin_step=100, end_step=1100)
    assert s.sparsity_at(0) == 0.1
    assert s.sparsity_at(100) == 0.1
    assert s.sparsity_at(1100) == 0.8
    assert s.sparsity_at(10**6) == 0.8


def test_monotone_and_cubic_shape():
    s = CubicSchedule(0.0, 0.9, begin_step=0, end_step=1000)
    vals = [s.sparsity_at(t) for t in range(0, 1201, 7)]
    assert all(a <= b for a, b in zip(vals, vals[1:]))
    # Cubic: the first half covers 7/8 of the ramp.
    assert s.sparsity_at(500) == pytest.approx(0.9 * 7 / 8)


def test_update_every_is_piecewise_constant():
    s = CubicSchedule(0.0, 0.5, begin_step=0, end_step=100, update_every=10)
    assert s.sparsity_at(11) == s.sparsity_at(19) == s.sparsity_at(10)
    assert s.sparsity_at(20) > s.sparsity_at(19)


@pytest.mark.parametrize(
    "kwargs, key",
    [
        (dict(initial_sparsity=0.5, final_sparsity=0.2), "final_sparsity"),
        (dict(final_sparsity=1.0), "final_sparsity"),
        (dict(begin_step=10, end_step=10), "end_step"),
        (dict(begin_step=-1), "begin_step"),
        (dict(update_every=0), "update_every"),
    ],
)
def test_invalid_config_raises(kwargs, key):
    with pytest.raises(ValueError, match=key):
        CubicSchedule(**kwargs)


def test_yaml_roundtrip_and_unknown_key(tmp_path):
    s = CubicSchedule(0.0, 0.7, 5, 500, 5)
    assert CubicSchedule.from_yaml(s.to_yaml()) == s
    path = tmp_path / "sched.yaml"
    s.to_yaml(path)
    assert CubicSchedule.from_yaml(path) == s
    with pytest.raises(ValueError, match="valid keys"):
        CubicSchedule.from_yaml("final_sparsity: 0.5\nramp: 3\n")

