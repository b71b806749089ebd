"""python -m espnet_omni.bin.export: files written, decodable, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from espnet2.bin.asr_inference import Speech2Text
from export_dummies import (
    load_supernet,
    make_experiment,
    pruned_registered,  # noqa: F401  (fixture)
    random_subnet,
)

from espnet_omni.bin.export import get_parser, main
from espnet_omni.export import export_asr_model
from espnet_omni.sparsity.masks import MaskSpec
from espnet_omni.sparsity.subnet import SubnetConfig
from espnet_omni.tasks import OmniSpeech2Text

pytestmark = pytest.mark.usefixtures("pruned_registered")
WAVE = np.random.default_rng(0).standard_normal(4000).astype(np.float32)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """(config, checkpoint, subnet yaml, model, config dict, subnet) of a row supernet."""
    root = tmp_path_factory.mktemp("bin")
    config, weights = make_experiment(root / "exp", mask_granularity="row",
                                      prune_frontend=True)
    model, conf = load_supernet(config, weights)
    subnet = random_subnet(model, seed=3)
    subnet_yaml = root / "subnet.yaml"
    subnet.to_yaml(subnet_yaml)
    return config, weights, subnet_yaml, model, conf, subnet


def _cmd(experiment, out_dir, fmt, *extra):
    config, weights, subnet_yaml = experiment[:3]
    return ["--asr_train_config", str(config), "--asr_model_file", str(weights),
            "--subnet", str(subnet_yaml), "--format", fmt, "--out_dir", str(out_dir),
            *extra]


@pytest.mark.parametrize("fmt", ["dense", "sparse", "row"])
def test_cli_writes_a_decodable_model_dir(experiment, tmp_path, fmt, capsys):
    main(_cmd(experiment, tmp_path, fmt))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "config.yaml", "export.json", "model.pth"]
    report = json.loads((tmp_path / "export.json").read_text())
    assert report["format"] == fmt
    assert report["model_bytes"] == (tmp_path / "model.pth").stat().st_size
    assert 0 < report["nonzero_params"] < report["total_params"]
    assert json.loads(capsys.readouterr().out) == report
    s2t_cls = Speech2Text if fmt == "dense" else OmniSpeech2Text  # dense: stock ESPnet
    s2t = s2t_cls(asr_train_config=tmp_path / "config.yaml",
                  asr_model_file=tmp_path / "model.pth", ctc_weight=1.0,
                  beam_size=1, lm_weight=0.0)
    text, tokens, token_ids, _ = s2t(WAVE)[0]
    assert len(tokens) == len(token_ids)


def test_stock_espnet_refuses_the_sparse_export(experiment, tmp_path):
    """A packed model.pth never loads silently into a stock Conformer."""
    main(_cmd(experiment, tmp_path, "sparse"))
    with pytest.raises(ValueError, match="omni_conformer_pruned"):
        Speech2Text(asr_train_config=tmp_path / "config.yaml",
                    asr_model_file=tmp_path / "model.pth", ctc_weight=1.0)


def test_subnet_of_another_architecture_raises(experiment, tmp_path):
    model, conf = experiment[3], experiment[4]
    other_cfg, other_w = make_experiment(tmp_path / "other", mask_granularity="row",
                                         prune_frontend=True, num_blocks=1)
    other, _ = load_supernet(other_cfg, other_w)
    wrong = SubnetConfig.uniform(other.encoder.prunable_layers(), 0.5,
                                 other.encoder.mask_spec)
    with pytest.raises(ValueError, match="does not match the model.*missing layers"):
        export_asr_model(model, conf, wrong, "sparse", tmp_path / "out")
    wrong_spec = SubnetConfig.uniform(model.encoder.prunable_layers(), 0.5,
                                      MaskSpec("unstructured"))
    with pytest.raises(ValueError, match="does not match the encoder's mask spec"):
        export_asr_model(model, conf, wrong_spec, "sparse", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written on error


@pytest.mark.parametrize("kwargs,match", [
    (dict(fmt="csr"), r"format='csr' is not one of \('dense', 'sparse', 'row', 'structured'\)"),
    (dict(dtype="int8"), r"dtype='int8' is not one of \('float32', 'float16'\)"),
    (dict(codec="gzip"), r"codec='gzip' is not one of \('raw', 'zlib'\)"),
])
def test_bad_options_raise(experiment, tmp_path, kwargs, match):
    model, conf, subnet = experiment[3:]
    args = {**dict(fmt="sparse", dtype="float32", codec="zlib"), **kwargs}
    with pytest.raises(ValueError, match=match):
        export_asr_model(model, conf, subnet, args["fmt"], tmp_path, args["dtype"],
                         args["codec"])
    with pytest.raises(SystemExit):
        get_parser().parse_args(_cmd(experiment, tmp_path, "csr"))


def test_non_supernet_model_raises(tmp_path):
    config, weights = make_experiment(tmp_path / "exp")
    model, conf = load_supernet(config, weights)
    model.encoder = torch.nn.Identity()
    with pytest.raises(TypeError, match="export: the encoder is Identity, not a supernet"):
        export_asr_model(model, conf, SubnetConfig({}), "dense", tmp_path / "out")
