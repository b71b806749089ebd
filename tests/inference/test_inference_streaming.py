"""StreamingRecognizer: streaming = simulated, CTC searches, bad input, CLI."""

import json

import numpy as np
import pytest
import soundfile
import torch
from espnet2.asr.frontend.default import DefaultFrontend

from espnet_omni.bin import asr_inference_streaming
from espnet_omni.corpus.audio_check import BadAudioError
from espnet_omni.inference.ctc_search import CTCGreedy, CTCPrefixBeam
from espnet_omni.inference.streaming_decode import decode_data_dir
from espnet_omni.inference.streaming import (
    FbankStream,
    StreamingRecognizer,
    simulated_streaming_encode,
)
from espnet_omni.nets.streaming import StreamingConfig
from espnet_omni.sparsity.subnet import SubnetConfig
from espnet_omni.testing.tiny_asr import VALID

CFGS = [StreamingConfig(4), StreamingConfig(3, left_chunks=1, lookahead=2),
        StreamingConfig(2, left_chunks=0)]


@pytest.mark.parametrize("n_fft, hop, center", [(512, 160, True), (400, 160, True),
                                                (401, 100, True), (512, 128, False)])
def test_fbank_stream_is_frame_exact(n_fft, hop, center):
    fe = DefaultFrontend(fs=16000, n_fft=n_fft, hop_length=hop, n_mels=20, center=center)
    x = np.random.default_rng(0).standard_normal(9800).astype(np.float32) * 0.1
    with torch.no_grad():
        ref = fe(torch.from_numpy(x)[None], torch.tensor([x.size]))[0][0]
    stream, outs, i = FbankStream(fe), [], 0
    for n in [100, 1, 300, 2000, 0, 5, 4000] * 3:
        outs.append(stream.step(x[i : i + n]))
        i += n
    outs.append(stream.step(x[i:], final=True))
    torch.testing.assert_close(torch.cat(outs), ref, atol=1e-5, rtol=0)


def _wav(root, idx=0):
    path = sorted((root / "data/wav").glob("valid_*.wav"))[idx]
    return soundfile.read(path, dtype="float32")[0]


def _randomize(model):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.normal_(0.0, 0.3)
    model.encoder.refresh_masks()


def _run(rec, wav, sizes):
    partials, i = [], 0
    while i < wav.size:
        for n in sizes:
            partials.append(rec.feed(wav[i : i + n]))
            i += n
    return partials, rec.finish()


@pytest.mark.parametrize("weights", ["trained", "random", "sparse"])
@pytest.mark.parametrize("cfg", CFGS, ids=str)
def test_streaming_equals_simulated(model_and_args, in_root, weights, cfg):
    model, args = model_and_args
    if weights == "random":
        _randomize(model)
    if weights == "sparse":
        enc = model.encoder
        enc.set_active_subnet(SubnetConfig.uniform(enc.prunable_layers(), 0.7, enc.mask_spec))
    wav = _wav(in_root)
    rec = StreamingRecognizer(model, cfg, beam_size=1, train_args=args)
    partials, final = _run(rec, wav, (1234, 0, 77, 3000))
    ref = simulated_streaming_encode(model, wav, cfg)  # (T', D)
    torch.testing.assert_close(rec.encoder_output(), ref, atol=1e-4, rtol=0)
    greedy = CTCGreedy(model.blank_id)
    greedy.step(model.ctc.log_softmax(ref[None])[0].detach().numpy())
    assert rec.token_ids() == greedy.best()
    assert final == rec._text()
    for before, after in zip(partials, partials[1:] + [final]):
        assert after.startswith(before)  # greedy partials only grow
    assert len(rec.chunk_ms) == -(-ref.size(0) // cfg.chunk_size)  # one per chunk


def test_prefix_beam_matches_offline_and_is_incremental(model_and_args, in_root):
    model, args = model_and_args
    _randomize(model)
    cfg = StreamingConfig(4)
    wav = _wav(in_root, 1)
    rec = StreamingRecognizer(model, cfg, beam_size=4, train_args=args)
    _run(rec, wav, (640,))
    ref = simulated_streaming_encode(model, wav, cfg)  # (T', D)
    logp = model.ctc.log_softmax(ref[None])[0].detach().numpy()  # (T', V)
    offline = CTCPrefixBeam(4, model.blank_id)
    offline.step(logp)
    assert rec.token_ids() == offline.best()


def test_prefix_beam_sums_paths_greedy_does_not():
    logp = np.log(np.array([[0.6, 0.4], [0.6, 0.4]]))  # (T, V): blank, "1"
    greedy, beam = CTCGreedy(), CTCPrefixBeam(2)
    greedy.step(logp)
    beam.step(logp[:1])
    beam.step(logp[1:])  # frame by frame = all at once
    assert greedy.best() == []  # best path: blank blank (0.36)
    assert beam.best() == [1]  # "1" via 3 paths: 0.64
    assert beam.nbest()[0][1] == pytest.approx(np.log(0.64))


def test_bad_input_and_edge_cases(model_and_args, in_root):
    model, args = model_and_args
    rec = StreamingRecognizer(model, StreamingConfig(4), train_args=args)
    wav = _wav(in_root)
    with pytest.raises(ValueError, match="8000 Hz.*16000 Hz"):
        rec.feed(wav, fs=8000)
    with pytest.raises(ValueError, match="mono"):
        rec.feed(np.stack([wav, wav], axis=1))
    with pytest.raises(ValueError, match="int16"):
        rec.feed((wav * 32767).astype(np.int16))
    assert rec.feed(np.zeros(0, np.float32)) == ""
    assert rec.finish() == ""  # nothing fed: no frames, no crash
    rec.reset()
    rec.feed(wav)
    text = rec.finish()
    assert rec.finish() == text  # a second finish returns the same text
    with pytest.raises(RuntimeError, match="reset"):
        rec.feed(wav)
    rec.reset()
    rec.feed(wav[:100])  # shorter than one STFT window
    assert rec.finish() == ""
    with pytest.raises(ValueError, match="beam_size"):
        StreamingRecognizer(model, beam_size=0)


def test_cli_smoke(in_root, tmp_path):
    out = tmp_path / "decode"
    asr_inference_streaming.main([
        "--asr_train_config", "exp/supernet/config.yaml",
        "--asr_model_file", "exp/supernet/valid.loss.best.pth",
        "--data_dir", str(VALID), "--output_dir", str(out),
        "--chunk_size", "4", "--left_chunks", "2", "--beam_size", "2",
    ])
    lines = (out / "text").read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["valid_utt0", "valid_utt1"]
    lat = json.loads((out / "latency.json").read_text())
    assert lat["num_utterances"] == 2 and lat["num_threads"] == 1
    assert lat["rtf"] > 0 and lat["chunk_compute_ms_max"] >= lat["chunk_compute_ms_mean"] > 0
    # 4 frames x 40 ms + conv2d context (2 x 10 ms) + half a 512-point window (16 ms)
    assert lat["algorithmic_latency_ms"] == pytest.approx(160 + 20 + 16)
    assert lat["streaming"]["chunk_size"] == 4 and lat["beam_size"] == 2


def test_ctc_search_doctests():
    import doctest

    from espnet_omni.inference import ctc_search

    assert doctest.testmod(ctc_search).failed == 0


def test_cli_subnet_and_stock_conformer_checkpoint(model_and_args, in_root, tmp_path):
    import yaml

    model, args = model_and_args
    enc = model.encoder
    sub = SubnetConfig.uniform(enc.prunable_layers(), 0.7, enc.mask_spec)
    sub.to_yaml(tmp_path / "subnet.yaml")
    cfg = StreamingConfig(4)

    def cli(config, model_file, out, *extra):
        asr_inference_streaming.main(["--asr_train_config", str(config), "--asr_model_file", str(model_file),
                                      "--data_dir", str(VALID), "--output_dir", str(out), "--chunk_size", "4",
                                      *extra])
        return (out / "text").read_text()

    # --subnet: the masked sub-network streams (what the in-process recognizer gives), not the dense one
    sparse = cli("exp/supernet/config.yaml", "exp/supernet/valid.loss.best.pth", tmp_path / "sparse",
                 "--subnet", str(tmp_path / "subnet.yaml"))
    enc.set_active_subnet(sub)
    rec = StreamingRecognizer(model, cfg, beam_size=1, train_args=args)
    want = []
    for line in sorted((VALID / "wav.scp").read_text().splitlines()):
        utt, path = line.split()
        wav = soundfile.read(path, dtype="float32")[0]
        rec.reset()
        rec.feed(wav)
        want.append(f"{utt} {rec.finish()}".rstrip())
    assert sparse.splitlines() == want
    with pytest.raises(ValueError, match="prunable|layer|architecture|unknown|missing"):
        bad = tmp_path / "bad.yaml"
        bad.write_text(yaml.safe_dump({"sparsities": {"encoders.99.nope": 0.5}}))
        cli("exp/supernet/config.yaml", "exp/supernet/valid.loss.best.pth", tmp_path / "bad", "--subnet", str(bad))

    # A stock `encoder: conformer` config + checkpoint: loaded into omni_conformer, streamed like it.
    conf = yaml.safe_load(open("exp/supernet/config.yaml"))
    conf["encoder"] = "conformer"
    conf["encoder_conf"] = {k: v for k, v in conf["encoder_conf"].items()
                            if k in ("output_size", "attention_heads", "linear_units", "num_blocks", "dropout_rate",
                                     "positional_dropout_rate", "attention_dropout_rate", "input_layer",
                                     "normalize_before", "macaron_style", "rel_pos_type", "pos_enc_layer_type",
                                     "selfattention_layer_type", "activation_type", "use_cnn_module",
                                     "cnn_module_kernel")}
    conf.pop("omni_conf", None)
    (tmp_path / "stock").mkdir()
    (tmp_path / "stock" / "config.yaml").write_text(yaml.safe_dump(conf))
    stock = cli(tmp_path / "stock" / "config.yaml", "exp/supernet/valid.loss.best.pth", tmp_path / "stock_out")
    dense = cli("exp/supernet/config.yaml", "exp/supernet/valid.loss.best.pth", tmp_path / "dense")
    assert stock == dense
    assert (tmp_path / "stock" / "config.omni.yaml").exists()


def test_decode_data_dir_refuses_inf_audio_naming_the_utterance(tmp_path):
    """Checked before the recognizer sees it (a stub: nothing is decoded)."""
    x = np.zeros(1600, np.float32)
    x[7] = np.inf
    soundfile.write(tmp_path / "inf.wav", x, 16000, subtype="FLOAT")
    (tmp_path / "wav.scp").write_text(f"utt-inf {tmp_path / 'inf.wav'}\n")

    class Stub:
        def chunk_samples(self):
            return 640

        def __getattr__(self, name):
            raise AssertionError(f"rec.{name} used: the bad audio reached the recognizer")

    with pytest.raises(BadAudioError, match=r"utterance 'utt-inf' in .*wav.scp: 1 NaN or inf samples "
                                            r"\(the first at sample 7\)"):
        decode_data_dir(Stub(), tmp_path, tmp_path / "out")
