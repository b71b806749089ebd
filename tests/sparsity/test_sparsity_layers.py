"""Masked layers: stock equivalence at s=0, state_dict keys, grads, caching."""

import pytest
import torch
from torch import nn

from espnet_omni.sparsity.layers import (
    MaskedConv1d,
    MaskedConv2d,
    MaskedLinear,
    convert_to_masked,
)
from espnet_omni.sparsity.masks import MaskSpec
from espnet_omni.sparsity.storage import weight_storage_bytes

GRANULARITIES = [
    MaskSpec("unstructured"),
    MaskSpec("block", block=(2, 4)),
    MaskSpec("nm", n=2, m=4),
    MaskSpec("row"),
]


def _stock_and_input(kind):
    torch.manual_seed(0)
    if kind == "linear":
        return nn.Linear(16, 8), MaskedLinear, torch.randn(3, 5, 16)
    if kind == "conv1d":
        return nn.Conv1d(16, 8, 1), MaskedConv1d, torch.randn(3, 16, 7)
    return nn.Conv2d(4, 8, 3, 2), MaskedConv2d, torch.randn(2, 4, 9, 11)


@pytest.mark.parametrize("kind", ["linear", "conv1d", "conv2d"])
@pytest.mark.parametrize("spec", GRANULARITIES, ids=lambda s: s.granularity)
def test_sparsity_zero_is_bitwise_stock(kind, spec):
    stock, cls, x = _stock_and_input(kind)
    masked = cls.from_module(stock, spec)
    assert masked.weight is stock.weight and masked.bias is stock.bias
    assert list(masked.state_dict()) == list(stock.state_dict())
    assert torch.equal(masked(x), stock(x))
    masked.sparsity = 0.5
    assert not torch.equal(masked(x), stock(x))


@pytest.mark.parametrize("kind", ["linear", "conv1d", "conv2d"])
@pytest.mark.parametrize("spec", GRANULARITIES, ids=lambda s: s.granularity)
def test_pruned_weights_get_zero_grad(kind, spec):
    stock, cls, x = _stock_and_input(kind)
    m = cls.from_module(stock, spec)
    m.sparsity = 0.5
    m(x).square().sum().backward()
    keep = m.bool_mask()
    assert (m.weight.grad[~keep] == 0).all()
    assert (m.weight.grad[keep] != 0).float().mean() > 0.9
    # masked forward equals a stock forward with the pruned weights zeroed
    with torch.no_grad():
        stock.weight.mul_(keep)
    m.refresh_ranks()
    assert torch.allclose(m(x), stock(x), atol=1e-6)


def test_mask_cache_reused_until_change():
    m = MaskedLinear(16, 8)
    m.sparsity = 0.5
    first = m.active_mask()
    assert m.active_mask() is first and first.dtype == m.weight.dtype
    m.sparsity = 0.75
    second = m.active_mask()
    assert second is not first and torch.equal(second.bool(), m.bool_mask())
    m.sparsity = 0.5  # switching back reuses the mask built before
    assert m.active_mask() is first
    m.refresh_ranks()
    assert m.active_mask() is not first
    assert torch.equal(m.active_mask().bool(), m.bool_mask())


def test_mask_cache_is_bounded_least_recently_used_first(monkeypatch):
    from espnet_omni.sparsity import layers

    monkeypatch.setattr(layers, "MASK_CACHE_SIZE", 2)
    m = MaskedLinear(16, 8)
    masks = {}
    for s in (0.25, 0.5, 0.25, 0.75):  # 0.5 is the least recently used when 0.75 arrives
        m.sparsity = s
        masks.setdefault(s, m.active_mask())
    assert len(m._mask_cache) == 2
    m.sparsity = 0.25
    assert m.active_mask() is masks[0.25]
    m.sparsity = 0.5
    assert m.active_mask() is not masks[0.5]  # rebuilt
    monkeypatch.setattr(layers, "MASK_CACHE_SIZE", 0)
    m.refresh_ranks()
    m.sparsity = 0.25
    assert m.active_mask() is not m.active_mask() and len(m._mask_cache) == 0


def test_ranks_follow_weights_only_on_refresh():
    m = MaskedLinear(16, 8, spec=MaskSpec())
    m.sparsity = 0.5
    before = m.bool_mask().clone()
    with torch.no_grad():
        m.weight.copy_(-m.weight.flip(0))  # new magnitude order
    assert torch.equal(m.bool_mask(), before)  # stale until refresh
    m.refresh_ranks()
    assert not torch.equal(m.bool_mask(), before)


def test_load_state_dict_refreshes_ranks_and_ranks_not_persistent():
    a, b = MaskedLinear(16, 8), MaskedLinear(16, 8)
    assert "mask_ranks" not in a.state_dict()
    b.load_state_dict(nn.Linear(16, 8).state_dict(), strict=True)
    b.load_state_dict(a.state_dict(), strict=True)
    assert torch.equal(b.mask_ranks, a.mask_ranks)


def test_invalid_sparsity_raises():
    m = MaskedLinear(16, 8)
    with pytest.raises(ValueError, match=r"MaskedLinear.sparsity.*\[0, 1\)"):
        m.sparsity = 1.0


@pytest.mark.parametrize("spec", GRANULARITIES, ids=lambda s: s.granularity)
def test_nonzero_and_size_decrease_with_sparsity(spec):
    m = MaskedLinear(64, 32, spec=spec)
    counts, sizes = [], []
    for s in (0.0, 0.25, 0.5, 0.75):
        m.sparsity = s
        counts.append(m.nonzero_params())
        sizes.append(m.size_bytes())
        assert counts[-1] == int(m.bool_mask().sum()) + 32
    assert counts[0] == 64 * 32 + 32 and sizes[0] == (64 * 32 + 32) * 4
    assert all(a > b for a, b in zip(counts, counts[1:]))
    assert all(a >= b for a, b in zip(sizes, sizes[1:])) and sizes[-1] < sizes[0]


def test_storage_formats():
    spec = MaskSpec("unstructured")
    shape = (64, 64)
    dense = weight_storage_bytes(shape, spec, 0.9, storage="dense")
    csr = weight_storage_bytes(shape, spec, 0.9, storage="compressed")
    bitmask = weight_storage_bytes(shape, spec, 0.9, storage="bitmask")
    assert dense == 64 * 64 * 4
    assert weight_storage_bytes(shape, spec, 0.9) == min(dense, csr, bitmask) < dense
    assert weight_storage_bytes(shape, spec, 0.0) == dense
    assert weight_storage_bytes(shape, MaskSpec("row"), 0.5, storage="compressed") == 32 * 64 * 4 + 32 * 2
    with pytest.raises(ValueError, match="storage"):
        weight_storage_bytes(shape, spec, 0.5, storage="zip")


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.ModuleDict({"ff": nn.Linear(8, 16), "pw": nn.Conv1d(16, 8, 1),
                           "dw": nn.Conv1d(8, 8, 3, groups=8), "norm": nn.LayerNorm(8)})
            for _ in range(2)
        )
        self.head = nn.Linear(8, 5)


def test_convert_to_masked_shares_params_and_keys():
    toy = _Toy()
    keys = list(toy.state_dict())
    params = {n: p for n, p in toy.named_parameters()}
    names = convert_to_masked(toy, MaskSpec(), include=["blocks.*"], exclude=["*.dw"])
    assert names == ["blocks.0.ff", "blocks.0.pw", "blocks.1.ff", "blocks.1.pw"]
    assert isinstance(toy.blocks[0]["ff"], MaskedLinear)
    assert isinstance(toy.blocks[1]["pw"], MaskedConv1d)
    assert type(toy.blocks[0]["dw"]) is nn.Conv1d and type(toy.head) is nn.Linear
    assert list(toy.state_dict()) == keys
    assert all(p is params[n] for n, p in toy.named_parameters())


def test_convert_to_masked_errors():
    with pytest.raises(ValueError, match=r"'blocks.\*.fff'.*candidates"):
        convert_to_masked(_Toy(), MaskSpec(), include=["blocks.*.fff"])
    with pytest.raises(ValueError, match=r"layer 'blocks.0.dw'.*\(8, 3\)"):
        convert_to_masked(_Toy(), MaskSpec("block", block=(1, 4)), include=["*.dw"])


def test_mask_cache_follows_kept_units_not_the_float_sparsity():
    """A ramp moves the sparsity every step; the float mask is rebuilt only when a unit
    crosses (the cache is keyed by the kept-unit count)."""
    layer = MaskedLinear(16, 8, spec=MaskSpec("row"))  # 8 units
    layer.sparsity = 0.30  # keeps round(5.6) = 6 rows
    first = layer.active_mask()
    layer.sparsity = 0.31  # keeps round(5.52) = 6 rows: the same mask object
    assert layer.active_mask() is first
    layer.sparsity = 0.45  # keeps round(4.4) = 4 rows: a new mask
    assert layer.active_mask() is not first and int(layer.active_mask().any(1).sum()) == 4
