"""OmniConformerEncoder: stock equivalence at sparsity 0, supernet verbs."""

import random

import pytest
import torch
from espnet2.asr.encoder.conformer_encoder import ConformerEncoder

from espnet_omni.nets.omni_conformer import OmniConformerEncoder
from espnet_omni.sparsity.layers import MaskedConv1d, MaskedLinear
from espnet_omni.sparsity.subnet import SubnetConfig

TINY = dict(input_size=20, output_size=16, attention_heads=2, linear_units=32,
            num_blocks=2, cnn_module_kernel=5)
VARIANTS = {
    "default": {},
    "macaron_latest": dict(macaron_style=True, rel_pos_type="latest",
                           pos_enc_layer_type="rel_pos",
                           selfattention_layer_type="rel_selfattn"),
}
GRANULARITIES = [
    dict(mask_granularity="unstructured"),
    dict(mask_granularity="block", mask_block=[1, 4]),
    dict(mask_granularity="nm", mask_n=2, mask_m=4),
    dict(mask_granularity="row"),
]


def _batch():
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(3, 40, 20, generator=g)  # (B, T, D)
    ilens = torch.tensor([40, 31, 22])
    return xs, ilens


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("front", [False, True])
def test_sparsity_zero_equals_stock(variant, front):
    kw = {**TINY, **VARIANTS[variant]}
    torch.manual_seed(1)
    stock = ConformerEncoder(**kw).eval()
    torch.manual_seed(2)  # different init: equality must come from the load
    omni = OmniConformerEncoder(**kw, prune_frontend=front).eval()
    omni.load_state_dict(stock.state_dict(), strict=True)
    assert list(omni.state_dict()) == list(stock.state_dict())
    xs, ilens = _batch()
    out, olens, states = omni(xs, ilens)
    ref, rlens, _ = stock(xs, ilens)
    assert states is None and torch.equal(olens, rlens)
    assert torch.equal(out, ref)
    omni.set_active_subnet(SubnetConfig.uniform(omni.prunable_layers(), 0.5, omni.mask_spec))
    assert not torch.allclose(omni(xs, ilens)[0], ref)


@pytest.mark.parametrize("gran", GRANULARITIES, ids=lambda g: g["mask_granularity"])
def test_backward_pruned_weights_get_zero_grad(gran):
    torch.manual_seed(0)
    enc = OmniConformerEncoder(**TINY, **gran, prune_frontend=True)
    enc.set_active_subnet(SubnetConfig.uniform(enc.prunable_layers(), 0.5, enc.mask_spec))
    xs, ilens = _batch()
    out, olens, _ = enc(xs, ilens)
    out.square().sum().backward()
    for name in enc.prunable_layers():
        layer = enc.get_submodule(name)
        keep = layer.bool_mask()
        assert (layer.weight.grad[~keep] == 0).all(), name
        assert layer.weight.grad[keep].abs().sum() > 0, name


def test_default_prunable_layers():
    enc = OmniConformerEncoder(**TINY)
    names = enc.prunable_layers()
    assert len(names) == 2 * 8  # q/k/v/out, ffn w_1/w_2, pointwise 1/2
    assert "encoders.1.conv_module.pointwise_conv1" in names
    assert not any(n.startswith("embed") or "depthwise" in n for n in names)
    assert isinstance(enc.get_submodule(names[0]), MaskedLinear)
    assert isinstance(enc.get_submodule("encoders.0.conv_module.pointwise_conv2"), MaskedConv1d)
    front = OmniConformerEncoder(**TINY, prune_frontend=True).prunable_layers()
    assert front[:2] == ["embed.conv.2", "embed.out"]


def test_custom_patterns_and_errors():
    enc = OmniConformerEncoder(**TINY, prunable=["encoders.*.feed_forward.w_1"],
                               prune_exclude=["encoders.1.*"])
    assert enc.prunable_layers() == ["encoders.0.feed_forward.w_1"]
    with pytest.raises(ValueError, match="matches no"):
        OmniConformerEncoder(**TINY, prunable=["encoders.*.feedforward.w_1"])
    with pytest.raises(ValueError, match="prune_frontend"):
        OmniConformerEncoder(**TINY, input_layer=None, prune_frontend=True)
    with pytest.raises(ValueError, match="granularity"):
        OmniConformerEncoder(**TINY, mask_granularity="channel")


def test_nonzero_params_decrease_with_sparsity():
    enc = OmniConformerEncoder(**TINY, prune_frontend=True)
    dense = sum(p.numel() for p in enc.parameters())
    enc.set_max_net()
    assert enc.active_nonzero_params() == dense
    assert enc.active_size_bytes(storage="dense") == dense * 4
    counts, sizes = [], []
    for s in (0.0, 0.3, 0.6, 0.9):
        enc.set_active_subnet(SubnetConfig.uniform(enc.prunable_layers(), s, enc.mask_spec))
        counts.append(enc.active_nonzero_params())
        sizes.append(enc.active_size_bytes())
    assert all(a > b for a, b in zip(counts, counts[1:]))
    assert all(a > b for a, b in zip(sizes, sizes[1:]))


def test_supernet_verbs():
    enc = OmniConformerEncoder(**TINY)
    space = enc.search_space((0.0, 0.4, 0.8), tie="per_block")
    cfg = enc.sample_active_subnet(space, random.Random(5))
    assert enc.get_active_subnet() == cfg
    assert enc.sample_active_subnet(space, random.Random(5)) == cfg
    enc.set_min_net(space)
    assert set(enc.get_active_subnet().sparsities.values()) == {0.8}
    enc.set_max_net()
    assert set(enc.get_active_subnet().sparsities.values()) == {0.0}
    back = SubnetConfig.from_yaml(cfg.to_yaml())
    enc.set_active_subnet(back)
    assert enc.get_active_subnet() == cfg


def test_subnet_for_other_architecture_or_spec_raises():
    enc = OmniConformerEncoder(**TINY)
    bigger = OmniConformerEncoder(**{**TINY, "num_blocks": 3})
    with pytest.raises(ValueError, match=r"unknown layers \['encoders.2"):
        enc.set_active_subnet(bigger.get_active_subnet())
    other = OmniConformerEncoder(**TINY, mask_granularity="row")
    with pytest.raises(ValueError, match="mask spec"):
        enc.set_active_subnet(other.get_active_subnet())


def test_refresh_masks_follows_weights():
    enc = OmniConformerEncoder(**TINY)
    enc.set_active_subnet(SubnetConfig.uniform(enc.prunable_layers(), 0.5, enc.mask_spec))
    layer = enc.get_submodule(enc.prunable_layers()[0])
    before = layer.bool_mask().clone()
    with torch.no_grad():
        for p in enc.parameters():
            p.copy_(torch.randn_like(p))
    assert torch.equal(layer.bool_mask(), before)
    enc.refresh_masks()
    assert not torch.equal(layer.bool_mask(), before)
