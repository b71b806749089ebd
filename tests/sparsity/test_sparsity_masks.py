"""Nested masks: nesting, achieved sparsity, ties, scores, errors."""

import math

import pytest
import torch

from espnet_omni.sparsity.masks import (
    MaskSpec,
    achieved_sparsity,
    keep_count,
    kept_weights,
    mask_at,
    nested_masks,
    num_units,
    unit_ranks,
)

SPECS = {
    "unstructured": MaskSpec("unstructured"),
    "block": MaskSpec("block", block=(2, 4)),
    "nm": MaskSpec("nm", n=2, m=4),
    "row": MaskSpec("row"),
}
SPARSITIES = [i / 20 for i in range(20)]  # 0.0 .. 0.95


def _weight(seed=0, shape=(16, 32)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g)


@pytest.fixture(params=list(SPECS))
def spec(request):
    return SPECS[request.param]


def test_nesting(spec):
    masks = nested_masks(_weight(), spec, SPARSITIES)  # (S, 16, 32)
    for lo, hi in zip(masks[:-1], masks[1:]):
        assert not (hi & ~lo).any()  # hi subset of lo
    assert masks.sum() > 0


def test_nested_equals_single(spec):
    w = _weight(1)
    ranks = unit_ranks(w, spec)
    masks = nested_masks(w, spec, SPARSITIES)
    for s, m in zip(SPARSITIES, masks):
        assert torch.equal(m, mask_at(ranks, spec, s))


def test_achieved_within_one_unit(spec):
    w = _weight(2)
    units = num_units(w.shape, spec)
    for s in SPARSITIES:
        m = mask_at(unit_ranks(w, spec), spec, s)
        assert abs(achieved_sparsity(m) - s) <= 0.5 / units + 1e-9, s
        assert int(m.sum()) == kept_weights(w.shape, spec, s)


def test_sparsity_zero_keeps_all(spec):
    assert mask_at(unit_ranks(_weight(), spec), spec, 0.0).all()


def test_ties_deterministic_lower_index_kept(spec):
    w = torch.ones(8, 16)
    r1, r2 = unit_ranks(w, spec), unit_ranks(w.clone(), spec)
    assert torch.equal(r1, r2)
    m = mask_at(r1, spec, 0.5)
    g = spec.granularity
    if g == "unstructured":
        expected = torch.arange(128).reshape(8, 16) < 64
    elif g == "row":
        expected = (torch.arange(8) < 4)[:, None].expand(8, 16)
    elif g == "nm":
        expected = (torch.arange(16) % 4 < 2)[None, :].expand(8, 16)
    else:  # block (2, 4): 4x4 grid of tiles, first 8 tiles in row-major order
        tiles = (torch.arange(16) < 8).reshape(4, 1, 4, 1)
        expected = tiles.expand(4, 2, 4, 4).reshape(8, 16)
    assert torch.equal(m, expected)


def test_keeps_largest_scores(spec):
    w = _weight(3)
    m = mask_at(unit_ranks(w, spec), spec, 0.6)
    g = spec.granularity
    if g == "unstructured":
        assert w.abs()[m].min() >= w.abs()[~m].max()
    elif g == "row":
        norms, kept = w.norm(dim=1), m[:, 0]
        assert norms[kept].min() >= norms[~kept].max()
    elif g == "nm":
        a, mg = w.abs().reshape(16, 8, 4), m.reshape(16, 8, 4)
        kept_min = torch.where(mg, a, math.inf).amin(-1)
        drop_max = torch.where(mg, -math.inf, a).amax(-1)
        assert (kept_min >= drop_max).all()
        assert (mg.sum(-1) == keep_count(0.6, 4)).all()
    else:
        norms = w.reshape(8, 2, 8, 4).norm(dim=(1, 3))
        kept = m.reshape(8, 2, 8, 4)[:, 0, :, 0]
        assert norms[kept].min() >= norms[~kept].max()


def test_conv_weight_shape(spec):
    w = torch.randn(8, 4, 4)  # (out, in, k) -> matrix (8, 16)
    r = unit_ranks(w, spec)
    assert r.shape == w.shape and r.dtype == torch.int32
    assert mask_at(r, spec, 0.5).shape == w.shape


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan")])
def test_invalid_sparsity_raises(bad):
    r = unit_ranks(_weight(), MaskSpec())
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        mask_at(r, MaskSpec(), bad)


def test_unknown_granularity_raises():
    with pytest.raises(ValueError, match="unstructured"):
        MaskSpec("channel")


def test_bad_spec_fields_raise():
    with pytest.raises(ValueError, match="block"):
        MaskSpec("block", block=(0, 4))
    with pytest.raises(ValueError, match="MaskSpec.n"):
        MaskSpec("nm", n=5, m=4)
    with pytest.raises(ValueError, match="valid keys"):
        MaskSpec.from_dict({"granularity": "nm", "k": 3})


def test_non_dividing_block_raises_naming_shapes():
    with pytest.raises(ValueError, match=r"block \(4, 4\).*\(6, 8\)"):
        unit_ranks(torch.randn(6, 8), MaskSpec("block", block=(4, 4)))
    with pytest.raises(ValueError, match="m=4.*input dim 9"):
        unit_ranks(torch.randn(6, 9), MaskSpec("nm"))
    with pytest.raises(ValueError, match=">= 2 dims"):
        unit_ranks(torch.randn(6), MaskSpec())


def test_keep_count_rounding_is_robust():
    # (1 - 0.3) * 5 is 3.4999999999999996 in floats: must round like 3.5.
    assert keep_count(0.3, 5) == 4
    assert keep_count(0.9, 10) == 1
    assert keep_count(0.0, 7) == 7


def test_spec_dict_roundtrip():
    s = MaskSpec("block", block=(4, 4))
    assert MaskSpec.from_dict(s.to_dict()) == s
