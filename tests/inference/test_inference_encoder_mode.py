"""asr_inference --encoder_mode streaming: ESPnet's decoding over the streaming encoder."""

from __future__ import annotations

from pathlib import Path

import espnet2.bin.asr_inference
import pytest
import soundfile
import torch

from espnet_omni.bin import asr_inference
from espnet_omni.inference.streaming_recognizer import StreamingRecognizer
from espnet_omni.tasks.speech2text import omni_asr_inference

EXP = Path("exp/supernet")  # the folder conftest's supernet_root trains into


def _speech2text():
    return espnet2.bin.asr_inference.Speech2Text(
        asr_train_config=str(EXP / "config.yaml"), asr_model_file=str(EXP / "valid.loss.best.pth"),
        device="cpu", ctc_weight=1.0, beam_size=1, lm_weight=0.0, nbest=1)


def test_streaming_mode_model_is_the_chunk_by_chunk_encoder(in_root, model_and_args):
    """The model ESPnet's Speech2Text builds under --encoder_mode streaming computes, on a whole
    utterance, the encoder output of chunk-by-chunk streaming; the default (full) mode does not."""
    model, args = model_and_args
    wav = soundfile.read(sorted((in_root / "data/wav").glob("valid_*.wav"))[0], dtype="float32")[0]
    speech, lengths = torch.from_numpy(wav)[None], torch.tensor([wav.size])
    with omni_asr_inference("streaming"):
        s2t = _speech2text()
    mode = s2t.asr_model.encoder.get_active_mode()
    assert mode.name == "streaming"
    rec = StreamingRecognizer(model, mode.streaming, beam_size=1, train_args=args)
    for i in range(0, wav.size, 1600):
        rec.feed(wav[i:i + 1600])
    rec.finish()
    with torch.no_grad():
        streamed = s2t.asr_model.encode(speech, lengths)[0][0]
    torch.testing.assert_close(streamed, rec.encoder_output(), atol=1e-4, rtol=0)
    with omni_asr_inference():
        full = _speech2text()
    assert full.asr_model.encoder.get_active_mode().name == "full"
    with torch.no_grad():
        assert not torch.allclose(full.asr_model.encode(speech, lengths)[0][0], streamed, atol=1e-3)


def test_encoder_mode_option_errors(in_root, tmp_path):
    with pytest.raises(SystemExit, match="--encoder_mode 'chunked': expected one of full, streaming"):
        asr_inference.split_encoder_mode(["--encoder_mode", "chunked"])
    with pytest.raises(SystemExit, match="--encoder_mode needs a value"):
        asr_inference.split_encoder_mode(["--x", "1", "--encoder_mode"])
    assert asr_inference.split_encoder_mode(["--a", "1", "--encoder_mode=streaming"]) == (["--a", "1"], "streaming")
    with pytest.raises(ValueError, match="mode='x'"):
        with omni_asr_inference("x"):
            pass
