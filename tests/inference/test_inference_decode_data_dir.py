"""Streaming decoding of a data dir with bad utterances (8 kHz, stereo):
``fail`` names the utterance and its file; ``drop`` skips, logs and counts
them, and the scorer counts their words as deleted."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import soundfile

from espnet_omni.bin import asr_inference_streaming
from espnet_omni.corpus.audio_check import BadAudioError
from espnet_omni.inference.decode_data_dir import decode_data_dir
from espnet_omni.inference.streaming_recognizer import StreamingRecognizer
from espnet_omni.nets.chunk_config import StreamingConfig
from espnet_omni.corpus.datadir import read_kv
from espnet_omni.scoring.score import score_set
from espnet_omni.testing.tiny_asr import VALID


@pytest.fixture
def mixed_dir(in_root, tmp_path):
    """valid_utt0 (good), bad8k (8 kHz), stereo (2 channels) with references."""
    good, _ = soundfile.read(VALID.parent / "wav/valid_utt0.wav", dtype="float32")
    soundfile.write(tmp_path / "bad8k.wav", good[::2], 8000, subtype="PCM_16")
    soundfile.write(tmp_path / "stereo.wav", np.stack([good, good], axis=1), 16000, subtype="PCM_16")
    d = tmp_path / "mixed"
    d.mkdir()
    (d / "wav.scp").write_text(f"valid_utt0 {in_root / VALID.parent / 'wav/valid_utt0.wav'}\n"
                               f"bad8k {tmp_path / 'bad8k.wav'}\nstereo {tmp_path / 'stereo.wav'}\n")
    (d / "text").write_text("valid_utt0 ab\nbad8k a b c\nstereo c a\n")
    return d


def test_fail_names_the_utterance_and_its_file(model_and_args, mixed_dir, tmp_path):
    model, args = model_and_args
    rec = StreamingRecognizer(model, StreamingConfig(4), train_args=args)
    with pytest.raises(BadAudioError, match=r"utterance 'bad8k' in .*wav\.scp \(.*bad8k\.wav\): audio at 8000 Hz"):
        decode_data_dir(rec, mixed_dir, tmp_path / "out")
    with pytest.raises(ValueError, match="on_error"):
        decode_data_dir(rec, mixed_dir, tmp_path / "out", on_error="skip")


def test_cli_fail_exits_naming_the_utterance(mixed_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        asr_inference_streaming.main(["--asr_train_config", "exp/supernet/config.yaml",
                                      "--asr_model_file", "exp/supernet/valid.loss.best.pth",
                                      "--data_dir", str(mixed_dir), "--output_dir", str(tmp_path / "out"),
                                      "--chunk_size", "4"])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert "'bad8k'" in err and "bad8k.wav" in err and "--on_error drop" in err


def test_cli_drop_skips_logs_counts_and_scores_them_as_deleted(mixed_dir, tmp_path, caplog):
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        asr_inference_streaming.main(["--asr_train_config", "exp/supernet/config.yaml",
                                      "--asr_model_file", "exp/supernet/valid.loss.best.pth",
                                      "--data_dir", str(mixed_dir), "--output_dir", str(out),
                                      "--chunk_size", "4", "--on_error", "drop"])
    hyp = read_kv(out / "text")
    assert list(hyp) == ["valid_utt0"]
    lat = json.loads((out / "latency.json").read_text())
    assert lat["num_utterances"] == 1 and lat["num_dropped"] == 2
    assert "8000 Hz" in lat["dropped"]["bad8k"] and "mono" in lat["dropped"]["stereo"]
    logged = caplog.text
    assert "dropped utterance 'bad8k'" in logged and "dropped utterance 'stereo'" in logged
    assert "dropped 2 of 3 utterances" in logged
    scores = score_set(read_kv(mixed_dir / "text"), hyp, {})
    assert scores["missing_hyps"] == 2
    words = scores["words"]
    assert words["n_utts"] == 3 and words["ref_len"] == 6 and words["dele"] >= 5  # "a b c" + "c a" all deleted
