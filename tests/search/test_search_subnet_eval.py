"""SubnetEvaluator: CTC greedy text, loss and the replay cache on a tiny supernet.

ESPnet's ``Speech2Text`` (CTC-only, beam 1) is not the reference: its CTC
prefix search scores prefixes (sums over alignments), which legitimately
differs from frame-wise argmax on a barely trained model (measured: greedy
``cccc`` vs prefix search ``cbcbcbc``). The reference is a naive argmax
decoder written here, one unpadded utterance at a time.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
import soundfile
import torch

from espnet_omni.corpus.audio_check import BadAudioError
from espnet_omni.search.dev_set import load_dev_set, plan_batches
from espnet_omni.search.subnet_eval import SubnetEvaluator, TokenText, ctc_greedy_ids
from espnet_omni.sparsity.subnet import SubnetConfig, sample
from espnet_omni.tasks import OmniASRTask

TRAIN = Path("data/train")


def _uniform(model, s: float) -> SubnetConfig:
    enc = model.encoder
    return SubnetConfig.uniform(enc.prunable_layers(), s, enc.mask_spec)


def _naive_decode(model, cfg: SubnetConfig) -> dict[str, str]:
    """Argmax per frame, itertools.groupby, drop id 0, join chars, <space> -> ' '."""
    model.encoder.set_active_subnet(cfg)
    out = {}
    for line in (TRAIN / "wav.scp").read_text().splitlines():
        uid, path = line.split()
        wav, _ = soundfile.read(path, dtype="float32")
        with torch.no_grad():
            enc, _ = model.encode(torch.from_numpy(wav)[None], torch.tensor([len(wav)]))
            frames = model.ctc.ctc_lo(enc)[0].argmax(-1).tolist()
        ids = [k for k, _ in itertools.groupby(frames) if k != 0]
        out[uid] = "".join(model.token_list[i] for i in ids).replace("<space>", " ")
    model.encoder.set_max_net()
    return out


@pytest.mark.parametrize("sparsity", [0.0, 0.6])
def test_greedy_text_equals_naive_argmax_decoder(model_and_args, sparsity):
    model, args = model_and_args
    cfg = _uniform(model, sparsity)
    # batch_seconds below every utterance: one utterance per batch, no padding.
    ev = SubnetEvaluator(model, TRAIN, train_args=args, batch_seconds=0.01)
    assert len(ev.batches) == 8
    hyps = ev.decode_all(cfg)
    assert hyps == _naive_decode(model, cfg)
    assert any(hyps.values()), "all hypotheses empty: the test would prove nothing"
    assert model.encoder.get_active_subnet() == _uniform(model, 0.0)  # restored


def test_loss_at_sparsity_zero_equals_model_forward(model_and_args):
    model, args = model_and_args
    ev = SubnetEvaluator(model, TRAIN, train_args=args, batch_seconds=100.0)
    assert len(ev.batches) == 1
    # Reference batch built here: soundfile audio, char ids by token-list index.
    wavs, ids = [], []
    for line in (TRAIN / "wav.scp").read_text().splitlines():
        wavs.append(soundfile.read(line.split()[1], dtype="float32")[0])
    for line in (TRAIN / "text").read_text().splitlines():
        ids.append([model.token_list.index(c) for c in line.split()[1]])
    speech = torch.zeros(len(wavs), max(map(len, wavs)))
    text = torch.full((len(ids), max(map(len, ids))), -1)
    for i, (w, t) in enumerate(zip(wavs, ids)):
        speech[i, : len(w)] = torch.from_numpy(w)
        text[i, : len(t)] = torch.tensor(t)
    with torch.no_grad():
        loss, stats, _ = model(speech, torch.tensor([len(w) for w in wavs]),
                               text, torch.tensor([len(t) for t in ids]))
    assert ev.score(_uniform(model, 0.0), "loss") == pytest.approx(float(loss), rel=1e-5)
    assert ev.score(_uniform(model, 0.8), "loss") != pytest.approx(float(loss), rel=1e-3)


def test_replay_cache_gives_identical_scores(model_and_args):
    model, args = model_and_args
    cached = SubnetEvaluator(model, TRAIN, train_args=args, batch_seconds=1.5)
    plain = SubnetEvaluator(model, TRAIN, train_args=args, batch_seconds=1.5,
                            cache_replay=False)
    assert len(cached.batches) > 1 and any(len(b.uids) > 1 for b in cached.batches)
    assert cached.replayed == ["frontend", "encoder.embed"] and plain.replayed == []
    space = model.encoder.search_space((0.0, 0.3, 0.6, 0.9))
    cfgs = [_uniform(model, 0.5), sample(space, random.Random(0))]
    for cfg in cfgs * 2:  # twice: a replayed output must come back unchanged
        assert cached.decode_all(cfg) == plain.decode_all(cfg)
        assert cached.score(cfg, "loss") == plain.score(cfg, "loss")  # bitwise


def test_pruned_embed_is_not_replayed(model_and_args):
    model, args = model_and_args
    args.encoder_conf = {**args.encoder_conf, "prune_frontend": True}
    pruned = OmniASRTask.build_model(args)
    pruned.load_state_dict(model.state_dict())
    assert any(n.startswith("embed.") for n in pruned.encoder.prunable_layers())
    cached = SubnetEvaluator(pruned, TRAIN, train_args=args, batch_seconds=1.5)
    plain = SubnetEvaluator(pruned, TRAIN, train_args=args, batch_seconds=1.5,
                            cache_replay=False)
    assert cached.replayed == ["frontend"]
    cfg = _uniform(pruned, 0.7)
    for _ in range(2):  # twice: GlobalMVN normalises the replayed features in place
        assert cached.score(cfg, "loss") == plain.score(cfg, "loss")
    assert cached.score(cfg, "loss") != cached.score(_uniform(pruned, 0.0), "loss")


def test_wer_and_cer_count_against_the_text_file(model_and_args, monkeypatch, tmp_path):
    model, args = model_and_args
    for name in ("wav.scp", "text"):  # the first three utterances of the tiny set
        lines = (TRAIN / name).read_text().splitlines()[:3]
        (tmp_path / name).write_text("".join(f"{x}\n" for x in lines))
    ev = SubnetEvaluator(model, tmp_path, train_args=args, max_utts=3)
    assert list(ev.references) == ["train_utt0", "train_utt1", "train_utt2"]
    fixed = {"train_utt0": "ab", "train_utt1": "bx", "train_utt2": "abc abc"}
    monkeypatch.setattr(ev, "decode_all", lambda cfg: fixed)
    cfg = _uniform(model, 0.0)
    assert ev.score(cfg, "wer") == pytest.approx(2 / 3)  # refs ab, ba, abc
    assert ev.score(cfg, "cer") == pytest.approx((0 + 1 + 4) / 7)
    with pytest.raises(ValueError, match="not one of"):
        ev.score(cfg, "bleu")


def test_stock_encoder_is_refused(model_and_args):
    _, args = model_and_args
    args.encoder = "conformer"
    stock = OmniASRTask.build_model(args)
    with pytest.raises(ValueError, match="ConformerEncoder, not a supernet"):
        SubnetEvaluator(stock, TRAIN, train_args=args)


def test_bad_data_dirs_raise(model_and_args, tmp_path):
    model, args = model_and_args
    with pytest.raises(FileNotFoundError, match="wav.scp"):
        load_dev_set(tmp_path)
    (tmp_path / "wav.scp").write_text("u1 a.wav\nu2 b.wav\n")
    (tmp_path / "text").write_text("u1 ab\n")
    with pytest.raises(ValueError, match="keys differ.*u2"):
        load_dev_set(tmp_path)
    with pytest.raises(ValueError, match="max_utts=0"):
        load_dev_set(TRAIN, max_utts=0)


def test_ctc_greedy_and_token_text(tmp_path):
    best = torch.tensor([[3, 3, 0, 3, 2, 2, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0]])
    assert ctc_greedy_ids(best, torch.tensor([8, 8])) == [[3, 3, 2], []]
    assert ctc_greedy_ids(best, torch.tensor([2, 8])) == [[3], []]  # padding ignored
    tokens = ["<blank>", "<unk>", "<space>", "a", "b", "<sos/eos>"]
    assert TokenText(tokens, "char")([3, 2, 4, 3]) == "a ba"
    with pytest.raises(ValueError, match="bpemodel"):
        TokenText(tokens, "bpe")
    assert plan_batches([5, 5, 5], 10) == [[0, 1], [2]]


def test_sentencepiece_text_uses_word_boundaries(tmp_path):
    spm = pytest.importorskip("sentencepiece")
    corpus = tmp_path / "t.txt"
    corpus.write_text("\n".join(["hello world", "hello there", "world there"] * 20))
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(tmp_path / "bpe"),
                                   vocab_size=12, model_type="bpe", minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "bpe.model"))
    pieces = sp.encode("hello world", out_type=str)
    assert pieces[0].startswith("\u2581")
    token_list = ["<blank>", "<unk>"] + sorted({*pieces}) + ["<sos/eos>"]
    text = TokenText(token_list, "bpe", str(tmp_path / "bpe.model"))
    assert text([token_list.index(p) for p in pieces]) == "hello world"


def test_max_utts_spreads_over_the_set(tmp_path):
    # A speaker-sorted set: the subset must hold both speakers, in file order.
    uids = [f"a-{i}" for i in range(6)] + [f"b-{i}" for i in range(6)]
    for u in uids:
        soundfile.write(tmp_path / f"{u}.wav", [0.0] * 160, 16000)
    (tmp_path / "wav.scp").write_text("".join(f"{u} {tmp_path}/{u}.wav\n" for u in uids))
    (tmp_path / "text").write_text("".join(f"{u} x\n" for u in uids))
    got = [u.uid for u in load_dev_set(tmp_path, max_utts=4)]
    assert got == ["a-0", "a-3", "b-0", "b-3"]
    assert [u.uid for u in load_dev_set(tmp_path, max_utts=50)] == uids


def test_nan_audio_is_refused_naming_the_utterance(tmp_path):
    for u, x in (("a-0", 0.0), ("a-1", float("nan"))):
        soundfile.write(tmp_path / f"{u}.wav", [0.0] * 80 + [x] * 80, 16000, subtype="FLOAT")
    (tmp_path / "wav.scp").write_text("".join(f"{u} {tmp_path}/{u}.wav\n" for u in ("a-0", "a-1")))
    (tmp_path / "text").write_text("a-0 x\na-1 x\n")
    with pytest.raises(BadAudioError, match=r"utterance 'a-1' in .*wav.scp: 80 NaN or inf samples"):
        load_dev_set(tmp_path)
