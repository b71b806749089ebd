"""SubnetConfig / SearchSpace: YAML round-trips, validation, seeded sampling."""

import random

import pytest
import torch

from espnet_omni.sparsity.masks import MaskSpec
from espnet_omni.sparsity.subnet import (
    SearchSpace,
    SubnetConfig,
    densest,
    sample,
    sparsest,
)

LAYERS = ["embed.out", "encoders.0.a", "encoders.0.b", "encoders.1.a", "encoders.1.b"]


def test_subnet_yaml_roundtrip(tmp_path):
    cfg = SubnetConfig(
        {n: i / 10 for i, n in enumerate(LAYERS)}, MaskSpec("block", block=(4, 4))
    )
    assert SubnetConfig.from_yaml(cfg.to_yaml()) == cfg
    path = tmp_path / "subnet.yaml"
    cfg.to_yaml(path)
    back = SubnetConfig.from_yaml(path)
    assert back == cfg and list(back.sparsities) == LAYERS


def test_subnet_out_of_range_names_layer():
    with pytest.raises(ValueError, match=r"encoders.0.a.*\[0, 1\)"):
        SubnetConfig({"encoders.0.a": 1.0})
    with pytest.raises(ValueError, match="encoders.0.a"):
        SubnetConfig({"encoders.0.a": -0.2})


def test_subnet_for_another_architecture_raises():
    cfg = SubnetConfig.uniform(LAYERS + ["encoders.7.a"], 0.3)
    with pytest.raises(ValueError, match=r"unknown layers \['encoders.7.a'\].*valid"):
        cfg.check_layers(LAYERS)
    with pytest.raises(ValueError, match=r"missing layers \['embed.out'\]"):
        SubnetConfig.uniform(LAYERS[1:], 0.3).check_layers(LAYERS)
    SubnetConfig.uniform(LAYERS, 0.3).check_layers(LAYERS)  # exact match is fine


def test_subnet_yaml_unknown_key_raises():
    with pytest.raises(ValueError, match="valid keys"):
        SubnetConfig.from_yaml("sparsities: {a: 0.1}\nbudget: 3\n")
    with pytest.raises(ValueError, match="granularity"):
        SubnetConfig.from_yaml("sparsities: {a: 0.1}\nspec: {granularity: cube}\n")


@pytest.mark.parametrize("make_rng", [random.Random, lambda s: torch.Generator().manual_seed(s)])
def test_sample_seeded_and_in_choices(make_rng):
    space = SearchSpace(LAYERS, (0.0, 0.25, 0.5))
    a = [sample(space, make_rng(3)).sparsities for _ in range(2)]
    assert a[0] == a[1]
    rng = make_rng(4)
    draws = [sample(space, rng).sparsities for _ in range(30)]
    values = {v for d in draws for v in d.values()}
    assert values == {0.0, 0.25, 0.5}
    assert len({tuple(d.values()) for d in draws}) > 1


def test_tie_global_and_per_block():
    rng = random.Random(0)
    g = sample(SearchSpace(LAYERS, tie="global"), rng).sparsities
    assert len(set(g.values())) == 1
    space = SearchSpace(LAYERS, tie="per_block")
    assert list(space.groups()) == ["embed", "encoders.0", "encoders.1"]
    for _ in range(10):
        c = sample(space, rng).sparsities
        assert c["encoders.0.a"] == c["encoders.0.b"]
        assert c["encoders.1.a"] == c["encoders.1.b"]


def test_densest_sparsest_and_layer_choices():
    space = SearchSpace(LAYERS, (0.0, 0.5, 0.9), layer_choices={"embed.out": (0.0, 0.3)})
    assert set(densest(space).sparsities.values()) == {0.0}
    hi = sparsest(space).sparsities
    assert hi["embed.out"] == 0.3 and hi["encoders.1.b"] == 0.9
    assert sparsest(space.capped(0.6)).sparsities["encoders.0.a"] == 0.5
    assert sparsest(space.capped(0.0)).sparsities["encoders.0.a"] == 0.0


def test_search_space_validation():
    with pytest.raises(ValueError, match="tie"):
        SearchSpace(LAYERS, tie="per_head")
    with pytest.raises(ValueError, match=r"unknown layers \['nope'\]"):
        SearchSpace(LAYERS, layer_choices={"nope": (0.1,)})
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        SearchSpace(LAYERS, (0.0, 1.0))
    with pytest.raises(ValueError, match="empty"):
        SearchSpace(LAYERS, ())
    with pytest.raises(ValueError, match="duplicates"):
        SearchSpace(LAYERS + LAYERS[:1])
    with pytest.raises(ValueError, match="no sparsity allowed"):
        SearchSpace(LAYERS, (0.5,), layer_choices={"embed.out": (0.1,)}, tie="global")
    with pytest.raises(TypeError, match="rng"):
        sample(SearchSpace(LAYERS), 7)


def test_search_space_yaml_roundtrip():
    space = SearchSpace(LAYERS, (0.0, 0.5), {"embed.out": (0.0,)}, "per_block",
                        MaskSpec("nm", n=2, m=8))
    assert SearchSpace.from_yaml(space.to_yaml()) == space
    with pytest.raises(ValueError, match="valid keys"):
        SearchSpace.from_yaml("layers: [a]\nchoice: [0.1]\n")
