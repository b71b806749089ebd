"""Packed storage and the pruned encoder's modules, without an ASR model."""

from __future__ import annotations

import pytest
import torch
from espnet2.legacy.nets.pytorch_backend.conformer.convolution import ConvolutionModule

from espnet_omni.export.row import compact_conv_module, cut_unit_pair
from espnet_omni.nets.packed_state import (
    pack_state_dict,
    pack_weight,
    unpack_state_dict,
    unpack_weight,
)
from espnet_omni.nets.pruned_conformer import PrunedConformerEncoder
from espnet_omni.nets.pruned_conv_module import PrunedConvolutionModule


def _sparse(shape, keep=0.2, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(*shape, generator=g)
    return w * (torch.rand(*shape, generator=g) < keep)


@pytest.mark.parametrize("codec", ["raw", "zlib"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("shape,tile", [((6, 8), (1, 1)), ((8, 4, 3), (2, 4)),
                                        ((5, 2, 3, 3), (1, 18)), ((3, 5), (1, 5))])
def test_pack_roundtrip_is_exact(shape, tile, dtype, codec):
    w = _sparse(shape)
    if tile != (1, 1):  # whole tiles zero, as a block / row mask makes them
        rows, cols = shape[0], w[0].numel()
        t = w.reshape(rows // tile[0], tile[0], cols // tile[1], tile[1])
        t *= (torch.rand(t.shape[0], 1, t.shape[2], 1) < 0.4)
    packed = pack_weight(w, tile, dtype, codec)
    assert packed["#mask"].dtype == torch.uint8
    out = unpack_weight(packed, "w")
    assert out.shape == w.shape and out.dtype == dtype
    assert torch.equal(out, w.to(dtype))


def test_packed_bytes_follow_the_sparsity():
    w = _sparse((64, 64), keep=0.2)
    raw = pack_weight(w, (1, 1), codec="raw")
    kept = int(w.ne(0).sum())
    assert raw["#values"].numel() == kept
    assert raw["#mask"].numel() == 64 * 64 // 8
    z = pack_weight(w, (1, 1))  # zlib: smaller still
    assert sum(t.numel() for t in (z["#mask"], z["#values"])) < (
        raw["#mask"].numel() + 4 * kept)


@pytest.mark.parametrize("corrupt,match", [
    (lambda p: p.pop("#mask"), "missing entries"),
    (lambda p: p.__setitem__("#meta", torch.tensor([9, 0, 0, 1, 1, 6, 8])),
     "bad #meta"),
    (lambda p: p.__setitem__("#mask", p["#mask"][:-1]), "#mask must hold"),
    (lambda p: p.__setitem__("#values", p["#values"][:-1]), "values for"),
    (lambda p: p.__setitem__("#meta", torch.tensor([1, 0, 0, 4, 4, 6, 8])),
     "does not divide"),
])
def test_corrupt_packed_weight_raises(corrupt, match):
    packed = pack_weight(_sparse((6, 8)), (1, 1), codec="raw")
    corrupt(packed)
    with pytest.raises(ValueError, match=match):
        unpack_weight(packed, "enc.w")


def test_pack_state_dict_packs_only_what_shrinks():
    state = {"a.weight": _sparse((32, 32)), "a.bias": torch.randn(32),
             "b.weight": torch.randn(32, 32), "n": torch.tensor(3)}
    packed = pack_state_dict(state, {"a.weight": (1, 1), "b.weight": (1, 1)}, codec="raw")
    assert "a.weight" not in packed and "a.weight#values" in packed
    assert "b.weight" in packed  # dense: a bitmask would only add bytes
    assert list(packed)[:3] == ["a.weight#meta", "a.weight#mask", "a.weight#values"]
    assert unpack_state_dict(packed) == ["a.weight"]
    assert set(packed) == set(state)
    assert all(torch.equal(packed[k], state[k]) for k in state)
    half = pack_state_dict(state, {}, torch.float16)
    assert half["a.bias"].dtype == torch.float16 and half["n"].dtype == torch.int64
    with pytest.raises(KeyError, match="not in the state dict"):
        pack_state_dict(state, {"c.weight": (1, 1)})


def test_unpack_state_dict_errors():
    entries = pack_weight(_sparse((4, 4)), (1, 1))
    both = {"w": torch.zeros(4, 4), **{"w" + k: v for k, v in entries.items()}}
    with pytest.raises(ValueError, match="both 'w' and its packed form"):
        unpack_state_dict(both)
    with pytest.raises(ValueError, match="without '#meta'"):
        unpack_state_dict({"w#values": torch.zeros(3)})


def _masked_conv_module(c=8, k=7, seed=0):
    """A stock conv module with pruned pointwise_conv1 rows; value/gate kept masks."""
    torch.manual_seed(seed)
    m = ConvolutionModule(c, k, torch.nn.SiLU()).eval()
    with torch.no_grad():
        m.norm.running_mean.uniform_(-1, 1)
        m.norm.running_var.uniform_(0.5, 2)
        m.norm.weight.uniform_(0.5, 1.5)
        m.norm.bias.uniform_(-1, 1)
        kept = torch.rand(2 * c) < 0.4
        kept[0] = kept[c] = False  # channel 0 dead for sure
        kept[1] = True  # channel 1 live for sure
        m.pointwise_conv1.weight[~kept] = 0.0  # a row mask: weights only
    return m, kept[:c], kept[c:]


@pytest.mark.parametrize("with_mask", [True, False])
def test_pruned_conv_module_equals_masked_stock(with_mask):
    stock, value, gate = _masked_conv_module()
    state = {f"m.{k}": v.clone() for k, v in stock.state_dict().items()}
    live = compact_conv_module(stock, state, "m", value, gate)
    assert live == int((value | gate).sum()) < 8
    pruned = PrunedConvolutionModule(8, 7, torch.nn.SiLU(), live_channels=live).eval()
    pruned.load_state_dict({k[2:]: v for k, v in state.items()}, strict=True)
    x = torch.randn(3, 12, 8)  # (B, T, C); lengths 12, 3 (< kernel), 1
    mask = (torch.arange(12)[None, :] < torch.tensor([12, 3, 1])[:, None])[:, None, :]
    mask = mask if with_mask else None
    with torch.no_grad():
        torch.testing.assert_close(pruned(x, mask), stock(x, mask), atol=1e-5, rtol=0)
        pruned(x, mask)  # cached table: same again
        torch.testing.assert_close(pruned(x, mask), stock(x, mask), atol=1e-5, rtol=0)


def test_cut_unit_pair_folds_constants():
    torch.manual_seed(0)
    w1, w2 = torch.nn.Linear(4, 6), torch.nn.Linear(6, 3)
    kept = torch.tensor([True, False, True, True, False, False])
    with torch.no_grad():
        w1.weight[~kept] = 0.0
    x = torch.randn(5, 4)
    ref = w2(torch.tanh(w1(x)))
    state = {"a.weight": w1.weight.data, "a.bias": w1.bias.data,
             "b.weight": w2.weight.data, "b.bias": w2.bias.data}
    cut_unit_pair(state, "a", "b", kept, torch.tanh)
    assert state["a.weight"].shape == (3, 4) and state["b.weight"].shape == (3, 3)
    out = torch.nn.functional.linear(
        torch.tanh(torch.nn.functional.linear(x, state["a.weight"], state["a.bias"])),
        state["b.weight"], state["b.bias"])
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)


TINY = dict(output_size=8, attention_heads=2, linear_units=16, num_blocks=2,
            cnn_module_kernel=5, macaron_style=True)


@pytest.mark.parametrize("kwargs,match", [
    (dict(ffn_units=[4]), "one value per block"),
    (dict(macaron_ffn_units=[4, 4], macaron_style=False), "macaron_style is off"),
    (dict(ffn_units=[4, 4], positionwise_layer_type="conv1d"), "positionwise_layer_type"),
    (dict(conv_channels=[9, 2]), r"live_channels=9 must be in \[1, channels=8\]"),
    (dict(conv_channels=[2, 2], use_cnn_module=False), "use_cnn_module is off"),
    (dict(subsampling_channels=[8]), "needs 2 values"),
    (dict(subsampling_channels=[4, 4], input_layer="linear"), "not a conv2d subsampling"),
])
def test_pruned_encoder_bad_sizes_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PrunedConformerEncoder(20, **{**TINY, **kwargs})


def test_pruned_encoder_expands_packed_weights_on_load():
    torch.manual_seed(0)
    src = PrunedConformerEncoder(20, **TINY).eval()
    with torch.no_grad():
        w = src.encoders[0].feed_forward.w_1.weight
        w.mul_(torch.rand_like(w) < 0.3)
    key = "encoders.0.feed_forward.w_1.weight"
    packed = pack_state_dict(src.state_dict(), {key: (1, 1)})
    assert key not in packed
    torch.manual_seed(1)
    dst = PrunedConformerEncoder(20, **TINY)
    dst.load_state_dict(packed, strict=True)
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(),
                                                 dst.state_dict().values()))
