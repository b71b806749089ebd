"""ESPnet ASR inference through OmniASRTask (configs naming our classes load)."""

from __future__ import annotations

import espnet2.bin.asr_inference
import espnet2.tasks.asr
import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from espnet2.bin.asr_inference import Speech2Text
from espnet2.tasks.asr import ASRTask
from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

from espnet_omni.bin import asr_inference
from espnet_omni.tasks import (
    ASR_CHOICES,
    OmniASRTask,
    OmniSpeech2Text,
    omni_asr_inference,
)
from tasks_dummies import TinyLinearEncoder, tiny_asr_cmd, write_tokens

KEY = "test_s2t_tiny_linear"


@pytest.fixture
def saved_model(tmp_path):
    """config.yaml + model.pth of a tiny model whose encoder only we know."""
    ASR_CHOICES.register("encoder", KEY, TinyLinearEncoder)
    args = OmniASRTask.get_parser().parse_args(
        tiny_asr_cmd(write_tokens(tmp_path), KEY, "{output_size: 6}")
    )
    model = OmniASRTask.build_model(args)
    config, weights = tmp_path / "config.yaml", tmp_path / "model.pth"
    with config.open("w") as f:
        yaml_no_alias_safe_dump(vars(args), f)
    torch.save(model.state_dict(), weights)
    yield config, weights, model
    ASR_CHOICES.unregister("encoder", KEY)


def test_omni_speech2text_loads_and_decodes(saved_model):
    config, weights, model = saved_model
    s2t = OmniSpeech2Text(
        asr_train_config=config, asr_model_file=weights, ctc_weight=1.0, beam_size=1,
        lm_weight=0.0,
    )
    assert isinstance(s2t.asr_model.encoder, TinyLinearEncoder)
    torch.testing.assert_close(
        s2t.asr_model.encoder.proj.weight, model.encoder.proj.weight
    )
    nbest = s2t(np.random.default_rng(0).standard_normal(4000).astype(np.float32))
    text, tokens, token_ids, _ = nbest[0]
    assert isinstance(tokens, list) and len(tokens) == len(token_ids)
    # Outside the call, ESPnet's globals are back.
    assert espnet2.bin.asr_inference.ASRTask is ASRTask
    stock = {c.name: c for c in ASRTask.class_choices_list}
    assert espnet2.tasks.asr.encoder_choices is stock["encoder"]


def test_stock_speech2text_cannot_load_it(saved_model):
    config, weights, _ = saved_model
    with pytest.raises(ValueError, match=KEY):
        Speech2Text(asr_train_config=config, asr_model_file=weights, ctc_weight=1.0)


def test_omni_asr_inference_is_scoped():
    with pytest.raises(RuntimeError, match="boom"):
        with omni_asr_inference():
            assert espnet2.bin.asr_inference.ASRTask is OmniASRTask
            raise RuntimeError("boom")
    assert espnet2.bin.asr_inference.ASRTask is ASRTask


@pytest.mark.parametrize("batch_size", [1, 2])
def test_asr_inference_refuses_nan_audio_naming_the_utterance(saved_model, tmp_path, capsys, batch_size):
    """ESPnet would decode NaN audio to an empty text; our entry stops, naming the utterance."""
    config, weights, _ = saved_model
    args = yaml.safe_load(config.read_text())
    args["token_type"] = "char"  # the data loader's preprocessor needs a tokenizer it can build
    config = tmp_path / "config_char.yaml"
    config.write_text(yaml.safe_dump(args))
    nan = np.zeros(3000, np.float32)
    nan[100] = np.nan
    sf.write(tmp_path / "good.wav", np.random.default_rng(0).standard_normal(4000) * 0.1, 16000,
             subtype="FLOAT")
    sf.write(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")
    (tmp_path / "wav.scp").write_text(f"utt-a {tmp_path / 'good.wav'}\nutt-b {tmp_path / 'nan.wav'}\n")
    with pytest.raises(SystemExit) as exit_info:
        asr_inference.main([
            "--ngpu", "0", "--batch_size", str(batch_size), "--ctc_weight", "1.0", "--beam_size", "1",
            "--lm_weight", "0.0", "--data_path_and_name_and_type", f"{tmp_path / 'wav.scp'},speech,sound",
            "--asr_train_config", str(config), "--asr_model_file", str(weights),
            "--output_dir", str(tmp_path / "decode"),
        ])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "error: utterance 'utt-b': 1 NaN or inf samples (the first at sample 100)" in err, err
