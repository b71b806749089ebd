"""RNN-T modified beam search with LM shallow fusion, chunk by chunk, in PyTorch and ONNX Runtime
(inference/transducer_decoder.TransducerBeamSearch, inference/onnx_transducer.OnnxTransducerBeam)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile
import torch

from espnet_omni.inference.lm_scorer import TorchLM
from espnet_omni.inference.streaming_recognizer import StreamingRecognizer, simulated_streaming_encode
from espnet_omni.inference.transducer_decoder import (
    TransducerBeamSearch,
    TransducerGreedy,
    make_transducer_search,
)
from espnet_omni.nets.chunk_config import StreamingConfig
from espnet_omni.testing import tiny_asr
from espnet_omni.testing.tiny_transducer import random_transducer
from espnet_omni.testing.tiny_lm import CountingLM, random_torch_lm


@pytest.fixture(scope="module")
def rnnt(tmp_path_factory):
    """(root, model): the tiny random RNN-T over the tiny corpus written in ``root``; torch on one
    thread meanwhile (tiny ops: a second thread on a busy 2-core machine makes them ~30x slower)."""
    root = tmp_path_factory.mktemp("rnnt_beam")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield root, random_transducer(root)
    finally:
        torch.set_num_threads(threads)


def _lm(vocab: int, seed: int = 0, scale: float = 3.0) -> TorchLM:
    return random_torch_lm(vocab, seed, scale, nlayers=1)


def _vocab(model) -> int:
    return model.joint_network.lin_out.out_features


def _enc(model, T: int, seed: int) -> torch.Tensor:
    """(T, D_enc) random encoder frames."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(T, model.encoder.output_size(), generator=g)


def _beam(model, beam, lm=None, lm_weight=0.0, length_bonus=0.0):
    return TransducerBeamSearch(model.decoder, model.joint_network, beam, lm, lm_weight, length_bonus,
                                model.blank_id)


def _lm_logprob(lm: TorchLM, seq) -> float:
    """log P_lm(seq + <eos>) from the LM's forward over the whole sequence (not its step API)."""
    with torch.no_grad():
        out, _ = lm.lm(torch.tensor([[lm.sos, *seq]]), None)  # (1, n + 1, V)
    lp = out.log_softmax(-1)[0].double().numpy()
    return float(sum(lp[i, t] for i, t in enumerate(list(seq) + [lm.eos])))


@torch.no_grad()
def _all_alignments(model, enc) -> dict:
    """{tokens: log sum over every alignment (each frame: blank, or one token) of p_rnnt}, from
    the prediction network's whole-sequence forward (not its step API), by enumeration."""
    blank, out, dec = model.blank_id, {}, {}

    def dec_out(ys):
        if ys not in dec:
            dec[ys] = model.decoder(torch.tensor([[blank, *ys]]))[0, -1]  # (D_dec,)
        return dec[ys]

    def walk(t, ys, lp):
        if t == enc.size(0):
            out[ys] = np.logaddexp(out.get(ys, -np.inf), lp)
            return
        logp = model.joint_network(enc[t], dec_out(ys)).double().log_softmax(-1).numpy()
        for v in range(logp.size):
            walk(t + 1, ys if v == blank else ys + (v,), lp + logp[v])

    walk(0, (), 0.0)
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_a_beam_that_keeps_everything_scores_every_sequence_exactly(rnnt, seed):
    """Beam wider than the lattice: every token sequence's score is log sum over its alignments
    of p_rnnt + w log P_lm(tokens <eos>) + bonus * len, each term from an independent reference."""
    _, model = rnnt
    w, bonus = 0.6, 0.4
    enc, lm = _enc(model, 4, seed), _lm(_vocab(model), seed)
    search = _beam(model, 10**6, lm, w, bonus)
    search.step(enc)
    search.finalize()
    got = dict((tuple(y), s) for y, s in search.nbest())
    expect = {ys: p + w * _lm_logprob(lm, ys) + bonus * len(ys) for ys, p in _all_alignments(model, enc).items()}
    assert got.keys() == expect.keys() and len(got) > 100
    for ys, s in expect.items():
        assert got[ys] == pytest.approx(s, rel=1e-5, abs=1e-5), ys
    assert search.best() == list(max(expect, key=expect.get))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_1_without_lm_is_greedy(rnnt, seed):
    """Beam 1, no LM, no bonus: the tokens of TransducerGreedy (itself ESPnet's greedy search, tested)."""
    _, model = rnnt
    enc = _enc(model, 60, seed)
    greedy, beam = TransducerGreedy(model.decoder, model.joint_network, model.blank_id), _beam(model, 1)
    greedy.step(enc)
    beam.step(enc)
    assert beam.best() == greedy.best() and 0 < len(greedy.best()) < 60
    assert isinstance(make_transducer_search(model.decoder, model.joint_network, model.blank_id), TransducerGreedy)
    assert isinstance(make_transducer_search(model.decoder, model.joint_network, model.blank_id, 4),
                      TransducerBeamSearch)
    assert isinstance(make_transducer_search(model.decoder, model.joint_network, model.blank_id, 1,
                                             length_bonus=0.5), TransducerBeamSearch)


@pytest.mark.parametrize("seed", [0, 3])
def test_chunk_by_chunk_equals_one_whole_run(rnnt, seed):
    """Fed 0..7 frames at a time, the n-best (tokens and scores) after every chunk is that of a
    whole-utterance run over the frames so far; and after finalize too. The prediction network
    and the LM run once per frame at most, batched over the hypotheses."""
    _, model = rnnt
    enc, lm = _enc(model, 40, seed), CountingLM(_lm(_vocab(model), seed))
    stream = _beam(model, 4, lm, 0.8, 0.3)
    calls = {"predict": 0}
    predict = stream._predict

    def counted(tokens, states):
        calls["predict"] += 1
        return predict(tokens, states)

    stream._predict, lm.calls = counted, 0
    rng, t = np.random.default_rng(seed), 0
    while t < len(enc):
        n = int(rng.integers(0, 8))
        stream.step(enc[t : t + n])
        t += n
        whole = _beam(model, 4, lm.lm, 0.8, 0.3)
        whole.step(enc[:t])
        assert stream.nbest() == whole.nbest()
    assert 0 < lm.calls <= len(enc) and 0 < calls["predict"] <= len(enc)
    assert len(stream.nbest()) > 1
    stream.finalize()
    whole.finalize()
    assert stream.nbest() == whole.nbest()
    with pytest.raises(RuntimeError, match="reset"):
        stream.step(enc[:1])
    stream.reset()
    assert stream.best() == []


def test_the_lm_changes_the_best_hypothesis(rnnt):
    """An opinionated LM at a high weight picks other tokens than the transducer alone."""
    _, model = rnnt
    changed = 0
    for seed in range(4):
        enc = _enc(model, 30, seed)
        plain, fused = _beam(model, 4), _beam(model, 4, _lm(_vocab(model), seed, scale=6.0), lm_weight=2.0)
        for s in (plain, fused):
            s.step(enc)
            s.finalize()
        changed += plain.best() != fused.best()
    assert changed >= 2


def _wav(root):
    wav, _ = soundfile.read(root / tiny_asr.VALID.parent / "wav" / "valid_utt0.wav", dtype="float32")
    return np.concatenate([wav] * 3)  # ~37 encoder frames


def test_recognizer_streams_to_the_whole_utterance_search(rnnt):
    """StreamingRecognizer (beam 4 + LM), fed audio in odd pieces: the n-best of the same search over
    the simulated streaming encoder output of the whole utterance; partial texts grow."""
    root, model = rnnt
    cfg, lm = StreamingConfig(4, left_chunks=1), _lm(_vocab(model), 1)
    rec = StreamingRecognizer(model, cfg, beam_size=4, lm=lm, lm_weight=0.7, length_bonus=0.5)
    wav, partials = _wav(root), []
    for i in range(0, len(wav), 1300):
        partials.append(rec.feed(wav[i : i + 1300]))
    final = rec.finish()
    whole = _beam(model, 4, lm, 0.7, 0.5)
    whole.step(simulated_streaming_encode(model, wav, cfg))
    whole.finalize()
    assert [y for y, _ in rec.search.nbest()] == [y for y, _ in whole.nbest()]
    assert rec.token_ids() == whole.best() and final == rec._text() and final
    assert len(set(partials)) > 2


def test_onnx_beam_equals_pytorch_beam_on_a_data_dir(rnnt, tmp_path, monkeypatch):
    """The transducer export (decoder.onnx with a batch axis, joiner.onnx, lm.onnx of the same LM)
    decoded by OnnxStreamingRecognizer with beam 4 + LM: the texts of the PyTorch recognizer on
    every utterance of the tiny train set, the n-best scores too; so does the ONNX search alone with
    the PyTorch LM on random frames. An old export (one hypothesis per decoder.onnx call) is
    refused for beam > 1, naming the file."""
    pytest.importorskip("onnxruntime")
    from espnet_omni.export.onnx_export import export_onnx
    from espnet_omni.export.onnx_lm import export_lm_graph
    from espnet_omni.inference.decode_data_dir import decode_data_dir
    from espnet_omni.inference.onnx_recognizer import OnnxStreamingRecognizer
    from espnet_omni.inference.onnx_transducer import OnnxTransducerBeam, make_onnx_transducer_search

    root, model = rnnt
    monkeypatch.chdir(root)  # wav.scp paths are relative to the corpus root
    cfg, lm = StreamingConfig(4, left_chunks=2), _lm(_vocab(model), 2)
    meta = export_onnx(model, tmp_path / "onnx", cfg, modes=("streaming",))
    meta["lm"] = export_lm_graph(lm.lm, tmp_path / "onnx" / "lm.onnx")  # lm.onnx of the same LM
    meta["graphs"]["lm"] = "lm.onnx"
    (tmp_path / "onnx" / "onnx.json").write_text(json.dumps(meta))
    opts = dict(beam_size=4, lm_weight=0.7, length_bonus=0.5)
    torch_rec = StreamingRecognizer(model, cfg, lm=lm, **opts)
    onnx_rec = OnnxStreamingRecognizer(tmp_path / "onnx", **opts)
    assert isinstance(onnx_rec.search, OnnxTransducerBeam)
    data = tiny_asr.TRAIN
    for name, rec in (("torch", torch_rec), ("onnx", onnx_rec)):
        decode_data_dir(rec, data, tmp_path / name)
    texts = (tmp_path / "torch" / "text").read_text()
    assert (tmp_path / "onnx" / "text").read_text() == texts
    assert len(texts.splitlines()) == 8 and len(set(line.split(" ", 1)[-1] for line in texts.splitlines())) > 2
    # the searches alone on 40 random frames (more hypotheses grow per frame than on the tiny audio)
    enc = _enc(model, 40, 5)
    onnx_search = make_onnx_transducer_search(tmp_path / "onnx", meta, None, lm=lm, **opts)
    torch_search = _beam(model, 4, lm, 0.7, 0.5)
    onnx_search.step(enc.numpy())
    torch_search.step(enc)
    for want, got in ((torch_rec.search, onnx_rec.search), (torch_search, onnx_search)):  # (the last utterance's)
        want, got = want.nbest(), got.nbest()
        assert [y for y, _ in got] == [y for y, _ in want] and len(want) > 1
        np.testing.assert_allclose([s for _, s in got], [s for _, s in want], rtol=1e-4)

    class OneHypothesisGraph:  # decoder.onnx as exported before its batch axis
        def get_inputs(self):
            return [type("Input", (), {"shape": [1, 1]})()]

    with pytest.raises(ValueError, match=r"old/decoder.onnx steps one hypothesis at a time .*re-export"):
        OnnxTransducerBeam(OneHypothesisGraph(), None, meta, 4, where="old")


def test_bad_options_are_refused_naming_them(rnnt):
    _, model = rnnt
    for kwargs, match in [(dict(beam_size=0), r"beam_size=0: must be >= 1"),
                          (dict(beam_size=4, lm_weight=0.5), r"lm_weight=0.5 without an LM"),
                          (dict(beam_size=4, lm=_lm(_vocab(model) + 1), lm_weight=0.5),
                           r"the LM has 7 tokens, the transducer's joint network 6 outputs: fuse an LM trained on")]:
        with pytest.raises(ValueError, match=match):
            StreamingRecognizer(model, StreamingConfig(4), **kwargs)
