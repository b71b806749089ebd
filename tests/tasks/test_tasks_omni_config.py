"""as_omni_config: a stock Conformer config becomes an omni_conformer one."""

import pytest
import torch
import yaml

from espnet_omni.nets.omni_conformer import OmniConformerEncoder
from espnet_omni.tasks import OmniASRTask, as_omni_config

ENC = {"output_size": 16, "attention_heads": 2, "linear_units": 32, "num_blocks": 1,
       "input_layer": "conv2d", "rel_pos_type": "latest", "cnn_module_kernel": 3}


def _config(tmp_path, encoder):
    conf = OmniASRTask.get_default_config()
    conf.update({"encoder": encoder, "encoder_conf": ENC, "token_list": ["<blank>", "a", "<sos/eos>"],
                 "model_conf": {"ctc_weight": 1.0}, "frontend_conf": {"n_mels": 20}, "decoder": None})
    path = tmp_path / f"{encoder}.yaml"
    path.write_text(yaml.safe_dump(conf))
    return path


def test_stock_conformer_config_and_checkpoint_become_omni(tmp_path):
    stock_cfg = _config(tmp_path, "conformer")
    stock, _ = OmniASRTask.build_model_from_file(stock_cfg, None, "cpu")
    torch.save(stock.state_dict(), tmp_path / "stock.pth")
    omni_cfg = as_omni_config(stock_cfg)
    assert omni_cfg == tmp_path / "conformer.omni.yaml"
    assert yaml.safe_load(omni_cfg.read_text())["encoder"] == "omni_conformer"
    omni, _ = OmniASRTask.build_model_from_file(omni_cfg, tmp_path / "stock.pth", "cpu")  # strict load
    assert isinstance(omni.encoder, OmniConformerEncoder)
    x, lens = torch.randn(2, 50, 20), torch.tensor([50, 41])
    stock.eval(), omni.eval()
    torch.testing.assert_close(omni.encoder(x, lens)[0], stock.encoder(x, lens)[0], rtol=0, atol=0)
    # an omni config is returned as it is
    assert as_omni_config(omni_cfg) == omni_cfg


def test_not_an_asr_config_raises(tmp_path):
    bad = tmp_path / "x.yaml"
    bad.write_text("optim: adam\n")
    with pytest.raises(ValueError, match="x.yaml: not an ESPnet ASR training config"):
        as_omni_config(bad)
