"""Export at the model level: every format reproduces the masked supernet."""

from __future__ import annotations

import json

import pytest
import torch
from espnet2.asr.encoder.conformer_encoder import ConformerEncoder
from espnet2.tasks.asr import ASRTask
from export_dummies import (
    ALL_PRUNABLE,
    encode,
    load_supernet,
    make_experiment,
    pruned_registered,  # noqa: F401  (fixture)
    random_subnet,
    speech_batch,
)

from espnet_omni.export import export_asr_model, supernet_only_keys
from espnet_omni.nets.pruned_conformer import PrunedConformerEncoder
from espnet_omni.nets.pruned_conv_module import PrunedConvolutionModule
from espnet_omni.sparsity.storage import weight_storage_bytes
from espnet_omni.sparsity.subnet import SubnetConfig
from espnet_omni.tasks import OmniASRTask

pytestmark = pytest.mark.usefixtures("pruned_registered")
ATOL = 1e-5
SUPERNETS = {
    "unstructured": dict(mask_granularity="unstructured", prune_frontend=True),
    "block": dict(mask_granularity="block", mask_block=[1, 4]),
    "nm": dict(mask_granularity="nm", mask_n=2, mask_m=4),
    "row": dict(mask_granularity="row", prune_frontend=True),
    "row_all": dict(mask_granularity="row", prunable=ALL_PRUNABLE),
    "group": dict(mask_granularity="group", prune_frontend=True),
}


@pytest.fixture(scope="module", params=list(SUPERNETS))
def supernet(request, tmp_path_factory):
    """(name, model with a random sub-network active, config dict, subnet, ref)."""
    name = request.param
    config, weights = make_experiment(tmp_path_factory.mktemp(name), **SUPERNETS[name])
    model, conf = load_supernet(config, weights)
    subnet = random_subnet(model)
    ref = encode(model, *speech_batch())
    return name, model, conf, subnet, ref


def _check_strict_load(out_dir, args):
    """model.pth holds exactly the exported model's keys (ESPnet loads with
    strict=False, which would hide a missing or stray key)."""
    model = (OmniASRTask if args.encoder != "conformer" else ASRTask).build_model(args)
    model.load_state_dict(torch.load(out_dir / "model.pth"), strict=True)


def _check_same_output(exported, ref):
    out, olens = encode(exported, *speech_batch())
    assert torch.equal(olens, ref[1])
    torch.testing.assert_close(out, ref[0], atol=ATOL, rtol=0)


def test_dense_export_loads_in_stock_espnet(supernet, tmp_path):
    name, model, conf, subnet, ref = supernet
    report = export_asr_model(model, conf, subnet, "dense", tmp_path)
    exported_conf = json.loads((tmp_path / "export.json").read_text())
    assert exported_conf["format"] == "dense" and report.size_ratio == 1.0
    stock, args = ASRTask.build_model_from_file(
        tmp_path / "config.yaml", tmp_path / "model.pth", "cpu"
    )
    _check_strict_load(tmp_path, args)
    assert type(stock.encoder) is ConformerEncoder
    assert args.encoder == "conformer"
    assert not set(args.encoder_conf) & set(supernet_only_keys())
    _check_same_output(stock, ref)
    # the exporter left the supernet's active sub-network as it was
    assert model.encoder.get_active_subnet() == subnet


def _predicted_saving(model, subnet) -> int:
    """Bytes the bitmask storage model saves over dense fp32, prunable weights."""
    enc = model.encoder
    saved = 0
    if enc.mask_spec.granularity == "group":  # no per-layer sparsity: count the masks
        enc.set_active_subnet(subnet)
        for name in enc.masked_layer_names():
            mask = enc.get_submodule(name).bool_mask()
            dense = mask.numel() * 4
            saved += max(0, dense - (int(mask.sum()) * 4 + -(-mask.numel() // 8)))
        return saved
    for name in enc.prunable_layers():
        shape = enc.get_submodule(name).weight.shape
        s = subnet.sparsities[name]
        dense = weight_storage_bytes(shape, enc.mask_spec, s, 4, "dense")
        saved += max(0, dense - weight_storage_bytes(shape, enc.mask_spec, s, 4, "bitmask"))
    return saved


def test_sparse_export_matches_and_is_smaller(supernet, tmp_path):
    name, model, conf, subnet, ref = supernet
    report = export_asr_model(model, conf, subnet, "sparse", tmp_path)
    exported, args = OmniASRTask.build_model_from_file(
        tmp_path / "config.yaml", tmp_path / "model.pth", "cpu"
    )
    assert isinstance(exported.encoder, PrunedConformerEncoder)
    _check_same_output(exported, ref)
    _check_strict_load(tmp_path, args)
    # tensor bytes: at least what the bitmask cost model saves (zlib only helps;
    # a row tile needs one bit per row, not per weight)
    saved = torch.load(tmp_path / "model.pth")
    assert any(k.endswith("#values") for k in saved)
    packed_bytes = sum(v.numel() * v.element_size() for v in saved.values())
    predicted = _predicted_saving(model, subnet)
    assert _state_bytes(model) - packed_bytes > 0.95 * predicted > 0
    assert report.model_bytes < report.dense_model_bytes


def _state_bytes(model) -> int:
    return sum(v.numel() * v.element_size() for v in model.state_dict().values())


@pytest.mark.parametrize("front", [False, True])
def test_sparse_file_ratio_follows_the_sparsity(tmp_path, front):
    """80% unstructured: the file shrinks as the cost model says (a model
    big enough for torch.save's per-entry overhead not to matter)."""
    config, weights = make_experiment(
        tmp_path / "exp", mask_granularity="unstructured", prune_frontend=front,
        output_size=64, linear_units=256, num_blocks=1, attention_heads=2,
    )
    model, conf = load_supernet(config, weights)
    subnet = SubnetConfig.uniform(model.encoder.prunable_layers(), 0.8,
                                  model.encoder.mask_spec)
    raw = export_asr_model(model, conf, subnet, "sparse", tmp_path / "raw", codec="raw")
    predicted = 1 - _predicted_saving(model, subnet) / _state_bytes(model)
    assert predicted < 0.6 and raw.size_ratio < predicted + 0.03
    zlib = export_asr_model(model, conf, subnet, "sparse", tmp_path / "zlib")
    assert zlib.model_bytes < raw.model_bytes
    assert zlib.nonzero_params == raw.nonzero_params < 0.6 * raw.total_params


@pytest.mark.parametrize("supernet", ["unstructured"], indirect=True)
def test_float16_export_is_half_and_close(supernet, tmp_path):
    name, model, conf, subnet, ref = supernet
    half = export_asr_model(model, conf, subnet, "sparse", tmp_path, "float16", "raw")
    full = export_asr_model(model, conf, subnet, "sparse", tmp_path / "fp32", codec="raw")

    def float_bytes(path):
        state = torch.load(path)
        return sum(v.numel() * v.element_size() for v in state.values()
                   if v.is_floating_point())

    half_bytes = float_bytes(tmp_path / "model.pth")
    assert 2 * half_bytes == float_bytes(tmp_path / "fp32/model.pth")
    assert half.model_bytes < full.model_bytes and half.dtype == "float16"
    exported, _ = OmniASRTask.build_model_from_file(
        tmp_path / "config.yaml", tmp_path / "model.pth", "cpu"
    )
    out, _ = encode(exported, *speech_batch())
    assert not torch.allclose(out, ref[0], atol=ATOL, rtol=0)  # really fp16
    torch.testing.assert_close(out, ref[0], atol=5e-2, rtol=5e-2)


def test_row_export_is_physically_smaller(supernet, tmp_path):
    name, model, conf, subnet, ref = supernet
    if not name.startswith("row"):
        with pytest.raises(ValueError, match="mask_granularity 'row'"):
            export_asr_model(model, conf, subnet, "row", tmp_path)
        return
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = export_asr_model(model, conf, subnet, "row", tmp_path)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # source untouched
    exported, args = OmniASRTask.build_model_from_file(
        tmp_path / "config.yaml", tmp_path / "model.pth", "cpu"
    )
    _check_strict_load(tmp_path, args)
    _check_same_output(exported, ref)
    enc, sup = exported.encoder, model.encoder
    for i, block in enumerate(enc.encoders):
        for attr in ("feed_forward", "feed_forward_macaron"):
            kept = sup.get_submodule(f"encoders.{i}.{attr}.w_1").bool_mask().any(1)
            assert getattr(block, attr).w_1.out_features == int(kept.sum())
    assert args.encoder_conf["ffn_units"] == report.encoder_sizes["ffn_units"]
    conv2_kept = int(sup.embed.conv[2].bool_mask().flatten(1).any(1).sum())
    assert enc.embed.conv[2].out_channels == conv2_kept < 16
    if name == "row_all":  # conv.0 pruned too: conv.2's inputs shrink
        conv0_kept = int(sup.embed.conv[0].bool_mask().flatten(1).any(1).sum())
        assert enc.embed.conv[2].in_channels == conv0_kept < 16
    for i, block in enumerate(enc.encoders):  # live conv channels: value or gate kept
        rows = sup.get_submodule(f"encoders.{i}.conv_module.pointwise_conv1").bool_mask()
        live = int((rows[:16].flatten(1).any(1) | rows[16:].flatten(1).any(1)).sum())
        assert isinstance(block.conv_module, PrunedConvolutionModule)
        assert block.conv_module.depthwise_conv.out_channels == live
        assert block.conv_module.dead_out.shape == (16, 16 - live)
    assert args.encoder_conf["conv_channels"] == report.encoder_sizes["conv_channels"]
    assert sum(p.numel() for p in exported.parameters()) < report.total_params


def test_structured_export_drops_whole_units(supernet, tmp_path):
    """A ``group`` supernet exports heads, units and channels physically removed,
    with the masked supernet's output; any other granularity is refused."""
    name, model, conf, subnet, ref = supernet
    if name != "group":
        with pytest.raises(ValueError, match="mask_granularity 'group'"):
            export_asr_model(model, conf, subnet, "structured", tmp_path)
        return
    report = export_asr_model(model, conf, subnet, "structured", tmp_path)
    exported, args = OmniASRTask.build_model_from_file(
        tmp_path / "config.yaml", tmp_path / "model.pth", "cpu"
    )
    _check_strict_load(tmp_path, args)
    _check_same_output(exported, ref)
    enc, sup = exported.encoder, model.encoder
    sup.set_active_subnet(subnet)
    for i, block in enumerate(enc.encoders):
        heads = int(sup.group(f"encoders.{i}.heads").kept_units()[0].sum())
        assert block.self_attn.h == heads >= 1
        assert block.self_attn.linear_q.out_features == block.self_attn.h * block.self_attn.d_k
        units = int(sup.group(f"encoders.{i}.ffn_units").kept_units()[0].sum())
        assert block.feed_forward.w_1.out_features == units
        live = int(sup.group(f"encoders.{i}.conv_channels").kept_units()[0].sum())
        assert block.conv_module.depthwise_conv.out_channels == live >= 1
        assert block.conv_module.dead_out.numel() == 0  # dropped channels add nothing
    kept = [int(k.sum()) for k in sup.group("frontend_channels").kept_units()]
    assert [enc.embed.conv[0].out_channels, enc.embed.conv[2].out_channels] == kept
    # the supernet's cost model counts exactly what the export keeps
    n_exported = sum(p.numel() for p in exported.encoder.parameters())
    assert n_exported == sup.active_nonzero_params()
    assert report.nonzero_params <= sum(p.numel() for p in exported.parameters())
    assert n_exported < sum(p.numel() for p in sup.parameters())


def test_sparsity_zero_exports_the_dense_supernet(tmp_path):
    config, weights = make_experiment(tmp_path / "exp", mask_granularity="row",
                                      prune_frontend=True)
    model, conf = load_supernet(config, weights)
    model.encoder.set_max_net()
    ref = encode(model, *speech_batch())
    dense = SubnetConfig.uniform(model.encoder.prunable_layers(), 0.0,
                                 model.encoder.mask_spec)
    for fmt in ("dense", "sparse", "row"):
        report = export_asr_model(model, conf, dense, fmt, tmp_path / fmt)
        assert report.encoder_sizes == {}
        exported, args = OmniASRTask.build_model_from_file(
            tmp_path / fmt / "config.yaml", tmp_path / fmt / "model.pth", "cpu"
        )
        _check_strict_load(tmp_path / fmt, args)
        _check_same_output(exported, ref)
