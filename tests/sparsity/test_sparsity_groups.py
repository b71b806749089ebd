"""Tied structured groups (mask_granularity 'group'): whole, nested, exact, counted."""

import random

import pytest
import torch
from espnet2.asr.encoder.conformer_encoder import ConformerEncoder

from espnet_omni.search.subnet_search import build_cost_table, candidate_subnet
from espnet_omni.nets.omni_conformer import OmniConformerEncoder
from espnet_omni.sparsity.groups import StructuredGroup
from espnet_omni.sparsity.subnet import SubnetConfig

TINY = dict(input_size=20, output_size=16, attention_heads=4, linear_units=32, num_blocks=2,
            cnn_module_kernel=5, macaron_style=True, rel_pos_type="latest",
            pos_enc_layer_type="rel_pos", selfattention_layer_type="rel_selfattn")


def _batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(3, 40, 20, generator=g), torch.tensor([40, 31, 22])


def _group_net(seed=0, **kw):
    torch.manual_seed(seed)
    return OmniConformerEncoder(**TINY, mask_granularity="group", prune_frontend=True, **kw).eval()


def test_groups_and_stock_equivalence():
    torch.manual_seed(1)
    stock = ConformerEncoder(**TINY).eval()
    enc = _group_net(2)
    enc.load_state_dict(stock.state_dict(), strict=True)
    assert list(enc.state_dict()) == list(stock.state_dict())  # groups add no keys
    assert enc.prunable_layers() == [
        f"encoders.{i}.{g}" for i in range(2)
        for g in ("heads", "macaron_units", "ffn_units", "conv_channels")] + ["frontend_channels"]
    assert all(isinstance(enc.get_submodule(n), StructuredGroup) for n in enc.prunable_layers())
    xs, ilens = _batch()
    assert torch.equal(enc(xs, ilens)[0], stock(xs, ilens)[0])


def _unit_zero(w, axis, size, offset, u):
    w = w.reshape(w.shape[0], -1)
    sl = slice(offset + u * size, offset + (u + 1) * size)
    part = w[sl] if axis == 0 else w[:, sl]
    return bool((part == 0).all())


@pytest.mark.parametrize("sparsity", [0.25, 0.5, 0.75])
def test_masks_keep_units_whole_and_nested(sparsity):
    enc = _group_net()
    enc.set_active_subnet(SubnetConfig.uniform(enc.prunable_layers(), sparsity, enc.mask_spec))
    for name in enc.prunable_layers():
        group = enc.get_submodule(name)
        for us, kept in zip(group.unit_sets, group.kept_units()):
            assert int(kept.sum()) >= us.min_units
            for u in range(us.units):
                for s in us.slices:
                    w = enc.get_submodule(s.layer).masked_weight().detach()
                    assert _unit_zero(w, s.axis, s.size, s.offset, u) == (not kept[u]), (name, s, u)
        # nested: what a sparser sub-network keeps, a denser one keeps too
        for denser, sparser in zip(group.kept_units(sparsity - 0.2), group.kept_units()):
            assert bool((denser | ~sparser).all())
    heads = enc.group("encoders.0.heads").kept_units()[0]
    assert int(heads.sum()) == max(1, round((1 - sparsity) * 4))


def test_dropped_weights_get_zero_grad_and_kept_ones_learn():
    enc = _group_net().train()
    enc.set_active_subnet(SubnetConfig.uniform(enc.prunable_layers(), 0.5, enc.mask_spec))
    xs, ilens = _batch()
    enc(xs, ilens)[0].square().sum().backward()
    for name in enc.masked_layer_names():
        layer = enc.get_submodule(name)
        keep = layer.bool_mask()
        assert not keep.all(), name
        assert (layer.weight.grad[~keep] == 0).all(), name
        assert layer.weight.grad[keep].abs().sum() > 0, name


def test_ranks_follow_loaded_weights():
    enc, other = _group_net(0), _group_net(5)
    cfg = SubnetConfig.uniform(enc.prunable_layers(), 0.5, enc.mask_spec)
    enc.set_active_subnet(cfg)
    other.set_active_subnet(cfg)
    before = [k.clone() for g in enc.prunable_layers() for k in enc.get_submodule(g).kept_units()]
    want = [k.clone() for g in other.prunable_layers() for k in other.get_submodule(g).kept_units()]
    assert any(not torch.equal(a, b) for a, b in zip(before, want))
    enc.load_state_dict(other.state_dict())
    after = [k for g in enc.prunable_layers() for k in enc.get_submodule(g).kept_units()]
    assert all(torch.equal(a, b) for a, b in zip(after, want))
    xs, ilens = _batch()
    assert torch.equal(enc(xs, ilens)[0], other(xs, ilens)[0])


def test_cost_counts_shrink_and_match_the_search_table():
    enc = _group_net()
    space = enc.search_space((0.0, 0.25, 0.5, 0.75), tie="per_layer")
    table = build_cost_table(enc, space, "params")
    rng = random.Random(0)
    counts = []
    for s in (0.0, 0.25, 0.5, 0.75):
        enc.set_active_subnet(SubnetConfig.uniform(enc.prunable_layers(), s, enc.mask_spec))
        counts.append(enc.active_nonzero_params())
    assert counts[0] == sum(p.numel() for p in enc.parameters())
    assert all(a > b for a, b in zip(counts, counts[1:]))
    for _ in range(5):
        cand = [rng.choice(space.group_choices(m)) for m in space.groups().values()]
        enc.set_active_subnet(candidate_subnet(space, cand))
        assert table.raw(cand) == enc.active_nonzero_params()


def test_group_selection_and_errors():
    enc = _group_net(prunable=["encoders.*.heads"], prune_exclude=["encoders.1.*"])
    assert enc.prunable_layers() == ["encoders.0.heads"]
    assert enc.masked_layer_names() == [f"encoders.0.self_attn.linear_{n}" for n in "qkv"] + [
        "encoders.0.self_attn.linear_pos", "encoders.0.self_attn.linear_out"]
    with pytest.raises(ValueError, match="matches no structured group"):
        _group_net(prunable=["encoders.*.self_attn.linear_q"])
    with pytest.raises(ValueError, match="mask spec"):  # a sub-network of another granularity
        enc.set_active_subnet(SubnetConfig({"encoders.0.heads": 0.5}))
    with pytest.raises(ValueError, match="StructuredGroup"):
        enc.get_submodule("encoders.0.self_attn.linear_q").bool_mask(0.5)
