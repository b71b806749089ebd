"""CTC prefix beam search with LM shallow fusion, chunk by chunk (inference/ctc_decoder.CTCPrefixBeamLM)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from espnet_omni.bin import asr_inference_streaming
from espnet_omni.inference.ctc_decoder import CTCGreedy, CTCPrefixBeam, CTCPrefixBeamLM, make_ctc_search
from espnet_omni.inference.lm_scorer import TorchLM
from espnet_omni.inference.streaming_recognizer import StreamingRecognizer, simulated_streaming_encode
from espnet_omni.nets.chunk_config import StreamingConfig
from espnet_omni.testing.tiny_asr import VALID, randomize_encoder, valid_wav
from espnet_omni.testing.tiny_lm import CountingLM, random_torch_lm, write_tiny_lm

V = 5  # blank, 3 tokens, <sos/eos>


def _logp(T: int, seed: int, sharp: float = 1.5, vocab: int = V) -> np.ndarray:
    """(T, V) random CTC log-posteriors; <sos/eos> (the last token) is never emitted."""
    z = np.random.default_rng(seed).standard_normal((T, vocab)) * sharp
    z[:, -1] = -np.inf
    return z - np.logaddexp.reduce(z, axis=1, keepdims=True)


def _lm(seed: int = 0, scale: float = 3.0, vocab: int = V) -> TorchLM:
    return random_torch_lm(vocab, seed, scale)


def _ctc_prob(logp: np.ndarray, seq) -> float:
    """log P_ctc(seq) by torch's CTC loss (the forward algorithm)."""
    if not seq:
        return float(logp[:, 0].sum())
    lp = torch.from_numpy(logp)[:, None]
    nll = torch.nn.functional.ctc_loss(lp, torch.tensor([list(seq)]), torch.tensor([len(logp)]),
                                       torch.tensor([len(seq)]), reduction="sum", zero_infinity=False)
    return -float(nll)


def _lm_logprob(lm: TorchLM, seq, with_eos: bool) -> float:
    """log P_lm(seq [+ <eos>]) from the LM's forward over the whole sequence (not its step API)."""
    ys = torch.tensor([[lm.sos, *seq]])
    with torch.no_grad():
        out, _ = lm.lm(ys, None)  # (1, n + 1, V)
    lp = out.log_softmax(-1)[0].double().numpy()
    targets = list(seq) + ([lm.eos] if with_eos else [])
    return float(sum(lp[i, t] for i, t in enumerate(targets)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wide_beam_scores_every_prefix_exactly(seed):
    """A beam that keeps every prefix scores each one log P_ctc + w log P_lm + bonus * len
    (after finalize with the end of sentence), each term from an independent reference."""
    T, w, bonus = 5, 0.7, 0.4
    logp, lm = _logp(T, seed), _lm(seed)
    search = CTCPrefixBeamLM(10_000, lm, lm_weight=w, length_bonus=bonus)
    search.step(logp)
    search.finalize()
    got = {tuple(p): s for p, s in search.nbest()}
    tokens = range(1, V - 1)
    expect = {}
    for n in range(T + 1):
        for seq in itertools.product(tokens, repeat=n):
            ctc = _ctc_prob(logp, seq)
            if ctc > -1e30:
                expect[seq] = ctc + w * _lm_logprob(lm, seq, with_eos=True) + bonus * n
    assert got.keys() == {s for s in expect if expect[s] > -np.inf}
    for seq, s in expect.items():
        assert got[seq] == pytest.approx(s, rel=1e-5, abs=1e-5), seq
    assert search.best() == list(max(expect, key=expect.get))


def test_the_lm_changes_the_best_hypothesis():
    """An opinionated LM at a high weight picks another prefix than the CTC alone (so the fusion is live)."""
    changed = 0
    for seed in range(6):
        logp = _logp(8, seed, sharp=0.8)
        plain, fused = CTCPrefixBeamLM(8), CTCPrefixBeamLM(8, _lm(seed, scale=6.0), lm_weight=2.0)
        for s in (plain, fused):
            s.step(logp)
            s.finalize()
        changed += plain.best() != fused.best()
    assert changed >= 2


@pytest.mark.parametrize("seed", [0, 3])
def test_chunk_by_chunk_equals_one_whole_run(seed):
    """Fed 0..7 frames at a time, the n-best (prefixes and scores) after every chunk is that of a
    whole-utterance run over the frames so far; and the final one too."""
    logp, lm = _logp(40, seed), _lm(seed)
    stream = CTCPrefixBeamLM(6, lm, lm_weight=0.8, length_bonus=0.3)
    rng, t = np.random.default_rng(seed), 0
    while t < len(logp):
        n = int(rng.integers(0, 8))
        stream.step(logp[t : t + n])
        t += n
        whole = CTCPrefixBeamLM(6, lm, lm_weight=0.8, length_bonus=0.3)
        whole.step(logp[:t])
        assert stream.nbest() == whole.nbest()
    stream.finalize()
    whole.finalize()
    assert stream.nbest() == whole.nbest()
    with pytest.raises(RuntimeError, match="reset"):
        stream.step(logp[:1])


@pytest.mark.parametrize("rnn_type", ["lstm", "gru"])
def test_torch_lm_cell_step_equals_espnet_batch_score(rnn_type):
    """TorchLM's cell-by-cell RNN step gives ESPnet's batch_score (the scorer of its beam search):
    next-token log-probabilities and states, for a batch of prefixes of different lengths."""
    from espnet2.lm.seq_rnn_lm import SequentialRNNLM

    torch.manual_seed(0)
    rnn = SequentialRNNLM(V, unit=8, nlayers=2, rnn_type=rnn_type).eval()
    lm = TorchLM(rnn, V)
    s0 = lm.start()
    a, b = lm.advance([s0, s0], [1, 2])
    c, d, e = lm.advance([a, b, a], [3, 1, 2])
    for state in (s0, a, b, c, d, e):
        ys = torch.tensor([[lm.sos, *state.tokens]])
        ref_state = None
        with torch.no_grad():
            for n in range(1, ys.size(1) + 1):
                ref, [ref_state] = rnn.batch_score(ys[:, :n], [ref_state], None)
        np.testing.assert_allclose(state.logp, ref[0].numpy(), atol=1e-6)
        for got, want in zip(state.state if rnn_type == "lstm" else [state.state],
                             ref_state if rnn_type == "lstm" else [ref_state]):
            torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_one_batched_lm_call_per_frame():
    lm = CountingLM(_lm())
    search = CTCPrefixBeamLM(6, lm, lm_weight=0.5)
    lm.calls = 0
    search.step(_logp(30, 4))
    assert 0 < lm.calls <= 30


def test_make_ctc_search_picks_the_search():
    """Greedy for beam 1, the plain prefix beam (pinned to the exact sums over alignments in
    test_inference_streaming_recognizer) for beam > 1, the fused one with an LM or a bonus."""
    assert isinstance(make_ctc_search(1), CTCGreedy)
    assert type(make_ctc_search(4)) is CTCPrefixBeam
    assert type(make_ctc_search(4, lm=_lm(), lm_weight=0.5)) is CTCPrefixBeamLM
    assert type(make_ctc_search(1, length_bonus=0.5)) is CTCPrefixBeamLM


def test_bad_options():
    with pytest.raises(ValueError, match="lm_weight=0.5 without an LM"):
        CTCPrefixBeamLM(4, None, lm_weight=0.5)
    with pytest.raises(ValueError, match="beam_size=0"):
        CTCPrefixBeamLM(0)


_wav, _randomize = valid_wav, randomize_encoder


def test_recognizer_with_lm_streams_to_the_whole_utterance_search(model_and_args, in_root):
    """StreamingRecognizer + TorchLM, fed audio in odd pieces: the final n-best is that of the same
    search over the simulated streaming encoder's whole-utterance posteriors; the LM changes it."""
    model, args = model_and_args
    _randomize(model)
    cfg = StreamingConfig(3, left_chunks=1, lookahead=1)
    lm = _lm(1, scale=6.0, vocab=len(model.token_list))
    wav = _wav(in_root, 1)
    rec = StreamingRecognizer(model, cfg, beam_size=5, train_args=args, lm=lm, lm_weight=1.5, length_bonus=0.5)
    i, partials = 0, []
    for n in [700, 0, 1999, 3] * 200:
        if i >= wav.size:
            break
        partials.append(rec.feed(wav[i : i + n]))
        i += n
    final = rec.finish()
    ref = simulated_streaming_encode(model, wav, cfg)  # (T', D)
    logp = model.ctc.log_softmax(ref[None])[0].detach().numpy()
    whole = CTCPrefixBeamLM(5, lm, lm_weight=1.5, length_bonus=0.5, blank=model.blank_id)
    whole.step(logp)
    whole.finalize()
    assert [p for p, _ in rec.search.nbest()] == [p for p, _ in whole.nbest()]
    assert rec.token_ids() == whole.best() and final == rec._text() and final
    np.testing.assert_allclose(rec.posteriors(), logp, atol=1e-4)
    plain = CTCPrefixBeamLM(5, blank=model.blank_id)
    plain.step(logp)
    assert plain.best() != whole.best()  # the LM is live in this instance
    assert any(partials)


def test_cli_with_lm_and_decode_config(model_and_args, in_root, tmp_path):
    """--lm_train_config/--lm_file + --decode_config: the CTC+LM search with the config's weights
    (and a flag overrides one); the LM refused alone or with a half-given pair."""
    model, _ = model_and_args
    lm_config, lm_file = write_tiny_lm(tmp_path / "lm", list(model.token_list), scale=4.0)
    conf = tmp_path / "decode.yaml"
    conf.write_text("beam_size: 3\nctc_weight: 1.0\nlm_weight: 0.9\npenalty: 0.2\nnbest: 1\n")
    out = tmp_path / "decode"
    base = ["--asr_train_config", "exp/supernet/config.yaml", "--asr_model_file", "exp/supernet/valid.loss.best.pth",
            "--data_dir", str(VALID), "--chunk_size", "4"]
    asr_inference_streaming.main(base + ["--output_dir", str(out), "--lm_train_config", str(lm_config),
                                         "--lm_file", str(lm_file), "--decode_config", str(conf), "--penalty", "0.1"])
    lat = json.loads((out / "latency.json").read_text())
    assert lat["beam_size"] == 3 and lat["lm_weight"] == 0.9 and lat["length_bonus"] == 0.1
    assert lat["num_utterances"] == 2
    for bad, match in [(["--lm_file", str(lm_file)], "both --lm_train_config and --lm_file"),
                       (["--lm_weight", "0.5"], "--lm_weight > 0 needs --lm_train_config"),
                       (["--decode_config", str(tmp_path / "none.yaml")], "none.yaml: not found")]:
        with pytest.raises(SystemExit, match=match):
            asr_inference_streaming.main(base + ["--output_dir", str(tmp_path / "x")] + bad)
    conf.write_text("beam_size: 3\nctc_weight: 0.3\n")
    with pytest.raises(SystemExit, match="ctc_weight 0.3"):
        asr_inference_streaming.main(base + ["--output_dir", str(tmp_path / "x"), "--decode_config", str(conf)])
    conf.write_text("beam_size: 3\nlm_wieght: 0.3\n")
    with pytest.raises(SystemExit, match="lm_wieght"):
        asr_inference_streaming.main(base + ["--output_dir", str(tmp_path / "x"), "--decode_config", str(conf)])
