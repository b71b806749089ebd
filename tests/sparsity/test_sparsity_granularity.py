"""Granularities as objects behind one registry (issue 27 item 1): README's worked example of a
new one runs as written, and the export formats are each granularity's own."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from espnet_omni.nets.omni_conformer import OmniConformerEncoder
from espnet_omni.sparsity import granularity as gran_mod
from espnet_omni.sparsity.granularity import REGISTRY, require_export_format
from espnet_omni.sparsity.masks import MaskSpec, keep_count, kept_weights, num_units, unit_ranks
from espnet_omni.sparsity.storage import weight_storage_bytes
from espnet_omni.sparsity.subnet import SubnetConfig

ROOT = Path(__file__).resolve().parents[2]
TINY = dict(input_size=20, output_size=16, attention_heads=2, linear_units=32, num_blocks=2, cnn_module_kernel=5)


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- example: granularity -->\n```python\n(.*?)```", text, re.S)
    assert m, "README.md: no '<!-- example: granularity -->' python block"
    return m.group(1)


@pytest.fixture
def column(monkeypatch):
    """README's Column granularity, registered for this test only."""
    monkeypatch.setattr(gran_mod, "REGISTRY", dict(REGISTRY))  # the example adds to a copy
    import espnet_omni.sparsity.masks as masks

    monkeypatch.setattr(masks, "REGISTRY", gran_mod.REGISTRY)
    namespace: dict = {}
    exec(compile(readme_example(), "README.md (example: granularity)", "exec"), namespace)
    assert "column" in gran_mod.REGISTRY and "column" not in REGISTRY
    return namespace["Column"]


def test_the_readme_granularity_prunes_whole_columns_and_trains(column):
    spec = MaskSpec("column")
    w = torch.randn(6, 8)
    ranks = unit_ranks(w, spec)
    assert num_units(w.shape, spec) == 8 and (ranks == ranks[0]).all()  # one rank per column
    assert kept_weights(w.shape, spec, 0.5) == 4 * 6
    assert weight_storage_bytes(w.shape, spec, 0.5, storage="compressed") < weight_storage_bytes(w.shape, spec, 0.0)

    torch.manual_seed(0)
    enc = OmniConformerEncoder(**TINY, mask_granularity="column")
    enc.set_active_subnet(SubnetConfig.uniform(enc.prunable_layers(), 0.5, enc.mask_spec))
    xs, ilens = torch.randn(2, 40, 20), torch.tensor([40, 31])
    out, _, _ = enc(xs, ilens)
    out.square().sum().backward()  # one training step's gradient
    for name in enc.prunable_layers():
        layer = enc.get_submodule(name)
        keep = layer.bool_mask().reshape(layer.weight.shape[0], -1)
        cols = keep.all(dim=0)
        assert torch.equal(keep, cols.expand_as(keep)), name  # whole columns kept or dropped
        assert int(cols.sum()) == keep_count(0.5, keep.shape[1]), name
        assert (layer.weight.grad.reshape(keep.shape)[~keep] == 0).all(), name
    with pytest.raises(ValueError, match=r"format 'row' needs a supernet trained with mask_granularity 'row'; "
                                         r"this one uses 'column'"):
        require_export_format("column", "row")


@pytest.mark.parametrize("name, fmt, ok", [
    ("unstructured", "sparse", True), ("row", "row", True), ("group", "structured", True),
    ("unstructured", "structured", False), ("row", "structured", False), ("block", "row", False),
])
def test_export_formats_are_each_granularitys_own(name, fmt, ok):
    if ok:
        require_export_format(name, fmt)
        return
    with pytest.raises(ValueError, match=rf"format '{fmt}' needs a supernet trained with mask_granularity "
                                         rf".*this one uses '{name}'.*use format 'sparse' or 'dense'"):
        require_export_format(name, fmt)


def test_an_unknown_granularity_names_the_registered_ones():
    with pytest.raises(ValueError, match=r"MaskSpec.granularity='column' is not one of \('unstructured', "
                                         r"'block', 'nm', 'row', 'group'\)"):
        MaskSpec("column")
