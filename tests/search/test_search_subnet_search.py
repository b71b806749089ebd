"""Search glue: the cost table equals the encoder's own counts; cache safety."""

from __future__ import annotations

import random

import pytest

from espnet_omni.evolutionary_search import EvolutionConfig
from espnet_omni.search.subnet_search import (
    SubnetSearchConfig,
    build_cost_table,
    candidate_subnet,
    search_subnets,
)


@pytest.mark.parametrize("tie", ["per_layer", "per_block", "global"])
@pytest.mark.parametrize("unit", ["fraction", "params", "bytes"])
def test_cost_table_equals_encoder_counts(model_and_args, tie, unit):
    model, _ = model_and_args
    enc = model.encoder
    space = enc.search_space((0.0, 0.3, 0.6, 0.9), tie)
    table = build_cost_table(enc, space, unit)
    assert table.names == list(space.groups())
    enc.set_max_net()
    dense = enc.active_size_bytes() if unit == "bytes" else enc.active_nonzero_params()
    assert table.dense == dense
    rng = random.Random(0)
    for _ in range(5):
        cand = tuple(rng.choice(space.group_choices(m)) for m in space.groups().values())
        enc.set_active_subnet(candidate_subnet(space, cand))
        got = enc.active_size_bytes() if unit == "bytes" else enc.active_nonzero_params()
        assert table(cand) == (got / dense if unit == "fraction" else got)
    enc.set_max_net()
    assert table(tuple(0.0 for _ in table.names)) == (1.0 if unit == "fraction" else dense)
    assert enc.get_active_subnet().sparsities == dict.fromkeys(enc.prunable_layers(), 0.0)


def test_candidate_subnet_spreads_group_values(model_and_args):
    enc = model_and_args[0].encoder
    space = enc.search_space((0.0, 0.5), "per_block")
    cfg = candidate_subnet(space, (0.5,))
    assert set(cfg.sparsities.values()) == {0.5} and cfg.spec == enc.mask_spec
    cfg.check_layers(enc.prunable_layers())
    with pytest.raises(ValueError, match="1 groups"):
        candidate_subnet(space, (0.5, 0.0))


def _config(**kw) -> SubnetSearchConfig:
    evo = EvolutionConfig(population=3, generations=1, progress=False)
    return SubnetSearchConfig(**{"budgets": [0.8], "metric": "loss", "choices": (0.0, 0.5, 0.9),
                                 "evolution": evo, **kw})


def test_impossible_budget_raises_before_reading_audio(model_and_args, tmp_path):
    model, args = model_and_args
    with pytest.raises(ValueError, match=r"budget 0\.05 \(fraction\) is impossible: "
                                         r"the minimum achievable is 0\.\d+"):
        search_subnets(model, args, tmp_path / "no_such_dir", tmp_path / "out",
                       _config(budgets=[0.8, 0.05]))
    with pytest.raises(ValueError, match=r"fraction budget must be in \(0, 1\]"):
        _config(budgets=[2.0])
    with pytest.raises(ValueError, match="metric='bleu' is not one of"):
        _config(metric="bleu")


def test_cache_of_another_setup_is_refused(model_and_args, tmp_path):
    model, args = model_and_args
    out = tmp_path / "out"
    first = search_subnets(model, args, "data/train", out, _config(max_utts=2))
    assert first.n_evaluations > 0
    with pytest.raises(ValueError, match=r"another setup \(differs in \['metric'\]"):
        search_subnets(model, args, "data/train", out, _config(max_utts=2, metric="cer"))
    # Other choices, same setup: the cached candidates (0.5, 0.9 values) are still
    # costed and ranked; nothing already scored is scored again.
    again = search_subnets(model, args, "data/train", out,
                           _config(max_utts=2, budgets=[0.95], choices=(0.0, 0.2)))
    assert again.n_cached == first.n_cached + again.n_evaluations
    assert again.results[0].score <= first.results[0].score


def test_recalibrated_scores_are_another_setup(model_and_args, tmp_path):
    """Scores with and without BatchNorm recalibration never share a cache."""
    model, args = model_and_args
    out = tmp_path / "out"
    calibrated = search_subnets(model, args, "data/train", out, _config(max_utts=2, calibration_utts=4),
                                calibration_dir="data/train")
    header = (out / calibrated.results[0].file).read_text()
    assert "BatchNorm statistics re-estimated on 4 utts of data/train" in header
    with pytest.raises(ValueError, match=r"another setup \(differs in \['calibration'\]"):
        search_subnets(model, args, "data/train", out, _config(max_utts=2))
