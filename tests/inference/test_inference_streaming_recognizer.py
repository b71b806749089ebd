"""StreamingRecognizer: streaming = simulated, CTC searches, bad input, CLI."""

import heapq
import itertools
import json

import numpy as np
import pytest
import soundfile
import torch
from espnet2.asr.frontend.default import DefaultFrontend

from espnet_omni.bin import asr_inference_streaming
from espnet_omni.corpus.audio_check import BadAudioError
from espnet_omni.inference.ctc_decoder import CTCGreedy, CTCPrefixBeam
from espnet_omni.inference.decode_data_dir import decode_data_dir
from espnet_omni.inference.streaming_recognizer import (
    FbankStream,
    StreamingRecognizer,
    simulated_streaming_encode,
)
from espnet_omni.nets.chunk_config import StreamingConfig
from espnet_omni.sparsity.subnet import SubnetConfig
from espnet_omni.testing.tiny_asr import VALID, randomize_encoder, valid_wav

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


_wav, _randomize = valid_wav, randomize_encoder


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


def _collapse(path, blank=0):
    out = []
    for i, tok in enumerate(path):
        if tok != blank and (i == 0 or tok != path[i - 1]):
            out.append(tok)
    return tuple(out)


def _brute_force(logp, blank=0):
    """P(prefix) for every label sequence: the sum over all V**T alignments (CTC's definition)."""
    probs = {}
    T, V = logp.shape
    for path in itertools.product(range(V), repeat=T):
        y = _collapse(path, blank)
        probs[y] = probs.get(y, 0.0) + float(np.exp(sum(logp[t, k] for t, k in enumerate(path))))
    return probs


def _exact_best(logp, blank=0):
    """The most probable label sequence, exactly: Graves' prefix search (best first
    on the probability that a prefix starts the output, an upper bound on every
    extension; Graves 2012, section 7.5). Independent of CTCPrefixBeam."""
    y = np.exp(logp.astype(np.float64))
    T, V = y.shape
    gb, gn = np.cumprod(y[:, blank]), np.zeros(T)  # () after t frames, ending in blank / a token
    best, best_p = (), gb[-1]
    heap, order = [(-1.0, 0, (), gn, gb)], itertools.count(1)
    while heap:
        neg_prefix_p, _, pre, gn, gb = heapq.heappop(heap)
        if -neg_prefix_p <= best_p:
            break  # no extension of any prefix left can beat best
        for k in range(V):
            if k == blank:
                continue
            done = gb if pre and pre[-1] == k else gb + gn  # pre complete after t frames, k may follow
            gn2, gb2 = np.zeros(T), np.zeros(T)
            gn2[0] = 0.0 if pre else y[0, k]
            prefix_p = gn2[0]
            for t in range(1, T):
                gn2[t] = y[t, k] * (done[t - 1] + gn2[t - 1])
                gb2[t] = y[t, blank] * (gb2[t - 1] + gn2[t - 1])
                prefix_p += y[t, k] * done[t - 1]
            if gn2[-1] + gb2[-1] > best_p:
                best, best_p = pre + (k,), gn2[-1] + gb2[-1]
            if prefix_p > best_p:
                heapq.heappush(heap, (-prefix_p, next(order), pre + (k,), gn2, gb2))
    return list(best), float(best_p)


def _torch_ctc_prob(logp, seq):
    """P(seq) from torch's CTC loss (forward algorithm)."""
    lp = torch.from_numpy(logp.astype(np.float64))[:, None]
    nll = torch.nn.functional.ctc_loss(lp, torch.tensor([seq]), torch.tensor([len(logp)]),
                                       torch.tensor([len(seq)]), reduction="sum")
    return float(torch.exp(-nll))


@pytest.mark.parametrize("T, V, seed, sharp", [(1, 3, 0, 1.0), (4, 3, 1, 1.0), (6, 3, 2, 3.0), (5, 4, 3, 1.0),
                                               (6, 4, 4, 2.0), (6, 4, 5, 0.3)])
def test_prefix_beam_equals_the_sum_over_all_alignments(T, V, seed, sharp):
    """A beam wide enough to keep every prefix gives every prefix's exact probability;
    a narrow one keeps lower bounds of them (it only drops paths)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((T, V)) * sharp
    logp = z - np.logaddexp.reduce(z, axis=1, keepdims=True)
    exact = _brute_force(logp)
    assert sum(exact.values()) == pytest.approx(1.0)
    wide, by_frame = CTCPrefixBeam(10_000), CTCPrefixBeam(10_000)
    wide.step(logp)
    for t in range(T):
        by_frame.step(logp[t : t + 1])
    for search in (wide, by_frame):
        got = {tuple(p): np.exp(s) for p, s in search.nbest() if s > -np.inf}
        assert got.keys() == exact.keys()
        for prefix, p in exact.items():
            assert got[prefix] == pytest.approx(p, rel=1e-9, abs=1e-15), prefix
        assert search.best() == list(max(exact, key=exact.get))
    narrow = CTCPrefixBeam(2)
    narrow.step(logp)
    kept = narrow.nbest()
    assert len(kept) <= 2 and [s for _, s in kept] == sorted((s for _, s in kept), reverse=True)
    for prefix, s in kept:
        assert np.exp(s) <= exact.get(tuple(prefix), 0.0) * (1 + 1e-9) + 1e-15


def test_prefix_beam_streams_to_the_exact_best_prefix(model_and_args, in_root):
    """The streaming recognizer's beam (4) finds the exactly most probable label
    sequence, where the best path (greedy) does not. The reference is an exhaustive
    prefix search in this file, its probability checked with torch's CTC loss."""
    model, args = model_and_args
    _randomize(model)
    with torch.no_grad():  # a fixed CTC layer over blank, a, b, c (<unk>, <sos/eos> masked): an exact search is cheap
        w = torch.randn(model.ctc.ctc_lo.weight.shape, generator=torch.Generator().manual_seed(3)) * 0.8
        model.ctc.ctc_lo.weight.copy_(w)
        model.ctc.ctc_lo.bias.zero_()
        model.ctc.ctc_lo.bias[[1, len(model.token_list) - 1]] = -30.0
    cfg = StreamingConfig(4)
    wav = _wav(in_root, 1)
    rec = StreamingRecognizer(model, cfg, beam_size=4, train_args=args)
    _run(rec, wav, (640,))
    ref = simulated_streaming_encode(model, wav, cfg)  # (T', D)
    logp = model.ctc.log_softmax(ref[None])[0].detach().double().numpy()  # (T', V)
    best, best_p = _exact_best(logp)
    assert best_p == pytest.approx(_torch_ctc_prob(logp, best), rel=1e-9)
    greedy = CTCGreedy(model.blank_id)
    greedy.step(logp)
    assert greedy.best() != best  # the instance tells a prefix search from the best path
    assert rec.token_ids() == best
    assert any(a == b for a, b in zip(best, best[1:]))  # a repeated token: the blank between counts
    assert np.exp(rec.search.nbest()[0][1]) <= best_p * (1 + 1e-6)  # pruned paths: a lower bound
    # incremental: the streamed n-best is that of one whole-utterance search of the same frames
    whole = CTCPrefixBeam(4, model.blank_id)
    whole.step(logp)
    assert [p for p, _ in rec.search.nbest()] == [p for p, _ in whole.nbest()]


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
    with pytest.raises(SystemExit, match="error: .*(prunable|layer|architecture|unknown|missing)"):  # one line
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
