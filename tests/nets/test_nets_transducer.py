"""RNN-T with torchaudio's loss through ESPnet's transducer model (model: transducer_torchaudio)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import torchaudio
from espnet2.asr.transducer.beam_search_transducer import BeamSearchTransducer
from espnet2.asr.transducer.beam_search_transducer import Hypothesis as TransducerHypothesis

from espnet_omni.nets.chunk_config import StreamingConfig
from espnet_omni.nets.transducer import TorchaudioRNNTLoss, TransducerASRModel
from espnet_omni.tasks import OmniASRTask, OmniSpeech2Text
from espnet_omni.testing import tiny_asr
from espnet_omni.testing.tiny_transducer import TRANSDUCER, random_transducer, transducer_args


def test_loss_adapter_is_torchaudio_with_gradients():
    torch.manual_seed(0)
    acts = torch.randn(2, 7, 4, 5, requires_grad=True)
    labels = torch.randint(1, 5, (2, 3))
    act_lens, label_lens = torch.tensor([7, 5]), torch.tensor([3, 2])
    loss = TorchaudioRNNTLoss(blank=0)(acts, labels, act_lens, label_lens)
    ref = torchaudio.functional.rnnt_loss(acts, labels.int(), act_lens.int(), label_lens.int(), blank=0)
    torch.testing.assert_close(loss, ref)
    loss.backward()
    assert torch.isfinite(acts.grad).all() and acts.grad.abs().sum() > 0
    with pytest.raises(NotImplementedError, match="FastEmit"):
        TorchaudioRNNTLoss(fastemit_lambda=0.01)
    assert "warprnnt_pytorch" not in sys.modules or sys.modules["warprnnt_pytorch"].__name__ != "warprnnt_pytorch"


def test_supernet_transducer_trains_and_decodes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny_asr.write_corpus(tmp_path)
    from espnet_omni.bin import asr_train

    asr_train.main(tiny_asr.collect_stats_flags(Path("stats"), "omni_conformer"))
    flags = [f for f in tiny_asr.train_flags(Path("stats"), Path("exp"), "omni_conformer")]
    i = flags.index("--model_conf")
    del flags[i:i + 2]  # ctc-only model_conf of the tiny CTC model
    i = flags.index("--decoder")
    del flags[i:i + 2]
    start = time.process_time()
    asr_train.main(flags + TRANSDUCER + ["--omni_conf", "{sampler: {rule: sandwich, num_subnets: 2}}"])
    assert time.process_time() - start < 300
    model, _ = OmniASRTask.build_model_from_file("exp/config.yaml", "exp/valid.loss.best.pth", "cpu")
    assert isinstance(model, TransducerASRModel) and model.use_transducer_decoder
    assert "warprnnt_pytorch" not in sys.modules  # the shim lives only during construction
    # ESPnet's transducer beam search decodes it (not the CTC/attention search; CTC weight unused). What
    # it decodes is checked on a model with a known output: test_transducer_overfits_two_utterances_and_decodes_them.
    s2t = OmniSpeech2Text(asr_train_config="exp/config.yaml", asr_model_file="exp/valid.loss.best.pth",
                          beam_size=2, device="cpu")
    assert isinstance(s2t.beam_search_transducer, BeamSearchTransducer) and s2t.beam_search is None
    wav, _ = soundfile.read(tiny_asr.VALID.parent / "wav" / "valid_utt0.wav", dtype="float32")
    text, tokens, token_ids, hyp = s2t(torch.from_numpy(wav))[0]
    assert isinstance(hyp, TransducerHypothesis) and hyp.yseq[0] == model.blank_id  # a transducer hypothesis
    assert token_ids == hyp.yseq[1:] and tokens == [model.token_list[i] for i in token_ids]
    assert text == "".join(tokens)
    assert os.path.exists("exp/compute.json")
    # searched with the transducer fitness (greedy RNN-T WER on dev), exported, decoded both ways
    from espnet_omni.bin import export, search
    from espnet_omni.inference.streaming_recognizer import StreamingRecognizer
    from espnet_omni.search.subnet_eval import SubnetEvaluator
    from espnet_omni.sparsity.subnet import SubnetConfig

    dev = str(tiny_asr.VALID)
    search.main(["--asr_train_config", "exp/config.yaml", "--asr_model_file", "exp/valid.loss.best.pth",
                 "--data_dir", dev, "--out_dir", "search", "--budgets", "0.8", "--population", "2",
                 "--generations", "1", "--no_progress"])
    assert json.loads(open("search/scores.key.json").read())["head"] == "transducer"  # auto: the transducer
    summary = json.loads(open("search/search.json").read())
    assert summary["results"][0]["score"] is not None
    ev = SubnetEvaluator(model, dev, train_args=OmniASRTask.build_model_from_file(
        "exp/config.yaml", "exp/valid.loss.best.pth", "cpu")[1], head="transducer", batch_seconds=0.01)
    cfg = SubnetConfig.from_yaml("search/subnet_0.8.yaml")
    hyps = ev.decode_all(cfg)
    s2t_hyps = {}
    model.encoder.set_active_subnet(cfg)
    greedy = BeamSearchTransducer(model.decoder, model.joint_network, beam_size=1)
    for uid, wav_path in (line.split() for line in open(f"{dev}/wav.scp")):
        wav, _ = soundfile.read(wav_path, dtype="float32")
        with torch.no_grad():
            enc = model.encode(torch.from_numpy(wav)[None], torch.tensor([len(wav)]))[0][0]
        s2t_hyps[uid] = "".join(model.token_list[i] for i in greedy.greedy_search(enc)[0].yseq[1:])
    assert hyps == s2t_hyps  # the fitness decodes what ESPnet's greedy transducer search decodes
    export.main(["--asr_train_config", "exp/config.yaml", "--asr_model_file", "exp/valid.loss.best.pth",
                 "--subnet", "search/subnet_0.8.yaml", "--format", "dense", "--out_dir", "export"])
    s2t = OmniSpeech2Text(asr_train_config="export/config.yaml", asr_model_file="export/model.pth",
                          beam_size=1, device="cpu")
    assert isinstance(s2t(torch.from_numpy(wav))[0][0], str)  # offline: ESPnet's transducer search
    from espnet_omni.inference.streaming_recognizer import simulated_streaming_encode
    from espnet_omni.inference.transducer_decoder import TransducerGreedy

    cfg = StreamingConfig(4)
    rec = StreamingRecognizer.from_files("export/config.yaml", "export/model.pth", streaming=cfg)
    rec.feed(wav)
    rec.finish()
    ref = TransducerGreedy(rec.model.decoder, rec.model.joint_network, rec.model.blank_id)
    ref.step(simulated_streaming_encode(rec.model, wav, cfg))
    assert rec.token_ids() == ref.best()  # streaming: the export's prediction and joint networks, chunk by chunk


def _transducer_args(tmp_path):
    return transducer_args(tmp_path)


def test_transducer_overfits_two_utterances_and_decodes_them(tmp_path, monkeypatch):
    """300 Adam steps on 2 utterances through our model (torchaudio's loss behind
    ESPnet's transducer): ESPnet's transducer searches (OmniSpeech2Text, beam 2
    and greedy) then give back both transcripts. A loss that trains the joint
    network towards anything else (blank id, label layout, lengths) fails here."""
    from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

    monkeypatch.chdir(tmp_path)
    tiny_asr.write_corpus(tmp_path)
    args = _transducer_args(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 20x faster than 2 threads on a busy 2-core machine
    try:
        torch.manual_seed(0)
        model = OmniASRTask.build_model(args).train()
        keep = (0, 3)  # "ab" and "cab": their first letters set the pitch, so the audio tells them apart
        wavs = [torch.from_numpy(soundfile.read(f"data/wav/train_utt{i}.wav", dtype="float32")[0]) for i in keep]
        want = [tiny_asr.TEXTS[i] for i in keep]
        ids = [torch.tensor([args.token_list.index(c) for c in t]) for t in want]
        batch = dict(speech=torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True),
                     speech_lengths=torch.tensor([len(w) for w in wavs]),
                     text=torch.nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=-1),
                     text_lengths=torch.tensor([len(t) for t in ids]))
        opt = torch.optim.Adam(model.parameters(), lr=0.005)
        first = None
        for _ in range(300):
            loss, stats, _ = model(**batch)
            first = float(stats["loss_transducer"]) if first is None else first
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert first > 3.0 and float(stats["loss_transducer"]) < 0.1  # P(transcript) > 0.9 each
        (tmp_path / "exp").mkdir()
        with open("exp/config.yaml", "w") as f:
            yaml_no_alias_safe_dump(vars(args), f, indent=4, sort_keys=False)
        torch.save(model.state_dict(), "exp/model.pth")
        for beam in (1, 2):  # greedy first: a model that never emits blank keeps the beam search long
            s2t = OmniSpeech2Text(asr_train_config="exp/config.yaml", asr_model_file="exp/model.pth",
                                  beam_size=beam, device="cpu")
            assert [s2t(w)[0][0] for w in wavs] == want, f"beam {beam}"
    finally:
        torch.set_num_threads(threads)


def test_transducer_model_without_transducer_decoder_is_refused(tmp_path):
    args = OmniASRTask.get_parser().parse_args(
        tiny_asr.train_flags(Path("stats"), Path("exp"), "omni_conformer")
        + ["--model", "transducer_torchaudio", "--normalize", "none"])
    args.token_list = ["<blank>", "a", "<sos/eos>"]
    with pytest.raises(ValueError, match="needs 'decoder: transducer'"):
        OmniASRTask.build_model(args)


def test_ctc_only_paths_refuse_a_transducer_or_a_model_without_ctc(tmp_path, monkeypatch):
    """The streaming decoder refuses a transducer search it cannot run (beam 0); the CTC fitness of the
    search and CTC distillation refuse a model without a CTC head (ctc_weight 0), before any
    data is read, instead of crashing on ``ctc=None``."""
    from espnet_omni.inference.streaming_recognizer import StreamingRecognizer
    from espnet_omni.search.subnet_eval import SubnetEvaluator
    from espnet_omni.train.supernet import SupernetConfig, SupernetState, TaggedModel

    monkeypatch.chdir(tmp_path)
    tiny_asr.write_corpus(tmp_path)
    args = _transducer_args(tmp_path)
    model = OmniASRTask.build_model(args).eval()
    with pytest.raises(ValueError, match=r"beam_size=0: must be >= 1"):
        StreamingRecognizer(model, beam_size=0)
    args.model_conf = {**args.model_conf, "ctc_weight": 0.0}
    no_ctc = OmniASRTask.build_model(args).eval()
    assert no_ctc.ctc is None
    with pytest.raises(ValueError, match=r"no CTC head \(model_conf.ctc_weight: 0\): score it through its "
                                         r"transducer \(--head transducer\)"):
        SubnetEvaluator(no_ctc, tmp_path / "no_data_read", train_args=args)
    ctc_args = OmniASRTask.get_parser().parse_args(
        tiny_asr.train_flags(Path("stats"), Path("exp"), "omni_conformer") + ["--normalize", "none"])
    ctc_args.token_list = args.token_list
    with pytest.raises(ValueError, match="fitness head 'transducer' .*needs a transducer model.*use --head ctc"):
        SubnetEvaluator(OmniASRTask.build_model(ctc_args).eval(), tmp_path / "no_data_read", train_args=ctc_args,
                        head="transducer")
    cfg = SupernetConfig.from_dict({"distill_weight": 0.5}) if hasattr(SupernetConfig, "from_dict") \
        else SupernetConfig(distill_weight=0.5)
    with pytest.raises(ValueError, match="distill_weight=0.5.*no CTC head"):
        TaggedModel(no_ctc, SupernetState(cfg, no_ctc.encoder, accum_grad=1))


def _random_transducer(tmp_path, monkeypatch):
    """An untrained joint network says blank everywhere: its outputs spread, blank about every other frame."""
    monkeypatch.chdir(tmp_path)
    return random_transducer(tmp_path)


def _wav():
    wav, _ = soundfile.read(tiny_asr.VALID.parent / "wav" / "valid_utt0.wav", dtype="float32")
    return np.concatenate([wav] * 4)  # ~50 encoder frames


def test_transducer_greedy_equals_espnets_greedy_search(tmp_path, monkeypatch):
    """TransducerGreedy fed 1, 5, 2, ... frames at a time gives the tokens of ESPnet's
    BeamSearchTransducer.greedy_search over the whole encoder output (an independent reference)."""
    from espnet_omni.inference.transducer_decoder import TransducerGreedy

    model = _random_transducer(tmp_path, monkeypatch)
    wav = _wav()
    with torch.no_grad():
        enc = model.encode(torch.from_numpy(wav)[None], torch.tensor([len(wav)]))[0][0]  # (T, D)
    ref = BeamSearchTransducer(model.decoder, model.joint_network, beam_size=1).greedy_search(enc)[0].yseq[1:]
    assert 0 < len(ref) < enc.size(0)  # it emits tokens and blanks: both branches run
    search, i = TransducerGreedy(model.decoder, model.joint_network, model.blank_id), 0
    for n in (1, 5, 2, 0, 7) * 40:
        search.step(enc[i : i + n])
        i += n
    assert i >= enc.size(0) and search.best() == ref
    search.reset()
    assert search.best() == []


def test_streaming_transducer_chunk_by_chunk_equals_simulated(tmp_path, monkeypatch):
    """StreamingRecognizer on a transducer: the prediction network's state carried across chunks,
    the text after every feed a prefix of the final one, the final tokens those of greedy RNN-T
    over the simulated streaming encoder output of the whole utterance."""
    from espnet_omni.inference.streaming_recognizer import StreamingRecognizer, simulated_streaming_encode
    from espnet_omni.inference.transducer_decoder import TransducerGreedy
    from espnet_omni.nets.chunk_config import StreamingConfig

    model = _random_transducer(tmp_path, monkeypatch)
    cfg = StreamingConfig(4, left_chunks=1)
    rec = StreamingRecognizer(model, cfg)
    wav = _wav()
    partials, i = [], 0
    for n in (1600, 300, 4000, 0, 2500) * 10:
        if i >= len(wav):
            break
        partials.append(rec.feed(wav[i : i + n]))
        i += n
    final = rec.finish()
    ref = TransducerGreedy(model.decoder, model.joint_network, model.blank_id)
    ref.step(simulated_streaming_encode(model, np.asarray(wav), cfg))
    assert rec.token_ids() == ref.best() and len(ref.best()) > 0
    assert all(final.startswith(p) for p in partials) and len(set(partials)) > 2  # it grew chunk by chunk


def test_transducer_onnx_export_streams_like_pytorch(tmp_path, monkeypatch):
    """A transducer's ONNX export (encoder graphs with encoder frames, decoder.onnx, joiner.onnx):
    the full-context graph's encoder frames are PyTorch's, and OnnxStreamingRecognizer's greedy
    RNN-T chunk by chunk gives the PyTorch StreamingRecognizer's tokens and partial texts."""
    pytest.importorskip("onnxruntime")
    from espnet_omni.export.onnx_export import export_onnx
    from espnet_omni.inference.onnx_recognizer import OnnxStreamingRecognizer
    from espnet_omni.inference.streaming_recognizer import StreamingRecognizer

    model = _random_transducer(tmp_path, monkeypatch)
    cfg = StreamingConfig(4, left_chunks=2)
    meta = export_onnx(model, tmp_path / "onnx", cfg)
    assert meta["head"] == "transducer" and {"decoder", "joiner"} <= set(meta["graphs"])
    wav = _wav()
    import onnxruntime as ort

    with torch.no_grad():
        feats, flens = model._extract_feats(torch.from_numpy(wav)[None], torch.tensor([len(wav)]))
        enc = model.encode(torch.from_numpy(wav)[None], torch.tensor([len(wav)]))[0][0]
    full = ort.InferenceSession(str(tmp_path / "onnx" / "full.onnx"), providers=["CPUExecutionProvider"])
    got = full.run(None, {"feats": feats.numpy(), "feats_lengths": flens.numpy()})[0][0]
    np.testing.assert_allclose(got, enc.numpy(), atol=1e-4, rtol=0)
    ref, onnx_rec = StreamingRecognizer(model, cfg), OnnxStreamingRecognizer(tmp_path / "onnx")
    for rec in (ref, onnx_rec):
        rec.partials = [rec.feed(wav[s : s + 1000]) for s in range(0, len(wav), 1000)] + [rec.finish()]
    assert onnx_rec.token_ids() == ref.token_ids() and len(ref.token_ids()) > 3
    assert onnx_rec.partials == ref.partials
    with pytest.raises(ValueError, match="beam_size=0: must be >= 1"):
        OnnxStreamingRecognizer(tmp_path / "onnx", beam_size=0)


def test_transducer_distillation_changes_the_sparse_subnetworks_gradients(tmp_path, monkeypatch):
    """omni_conf.distill_head: transducer: the dense sub-network's joint-network posteriors (per
    frame and label position) teach the sparse one: its KL is > 0 and its gradients differ from
    those without distillation and from CTC distillation; distilling through a missing joint
    network is refused, naming distill_head."""
    from espnet_omni.train.supernet import SupernetConfig, SupernetState, TaggedModel, activate

    model = _random_transducer(tmp_path, monkeypatch)  # eval: no dropout, the same forward each run
    args = _transducer_args(tmp_path)
    wavs = [torch.from_numpy(soundfile.read(f"data/wav/train_utt{i}.wav", dtype="float32")[0]) for i in (0, 3)]
    ids = [torch.tensor([args.token_list.index(c) for c in tiny_asr.TEXTS[i]]) for i in (0, 3)]
    batch = dict(speech=torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True),
                 speech_lengths=torch.tensor([len(w) for w in wavs]),
                 text=torch.nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=-1),
                 text_lengths=torch.tensor([len(t) for t in ids]))

    def student(weight, head):
        cfg = SupernetConfig.from_dict({"sampler": {"rule": "sandwich", "num_subnets": 2},
                                        "distill_weight": weight, "distill_head": head})
        state = SupernetState(cfg, model.encoder, accum_grad=1)
        tagged = TaggedModel(model, state)
        for ms in state.plan(0):  # the dense teacher (max), then the sparsest student (min)
            activate(model.encoder, ms)
            state.micro = ms
            model.zero_grad()
            loss, stats, _ = tagged(**batch)
        loss.backward()
        tagged.remove_hooks()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, stats

    plain, _ = student(0.0, "ctc")
    rnnt, stats = student(1.0, "transducer")
    ctc, ctc_stats = student(1.0, "ctc")
    assert float(stats["distill_min"]) > 1e-6 and float(ctc_stats["distill_min"]) > 1e-6
    changed = lambda a, b: max(float((a[n] - b[n]).abs().max()) for n in a)  # noqa: E731
    assert changed(rnnt, plain) > 1e-6 and changed(rnnt, ctc) > 1e-6
    # the joint network gets the transducer distillation's gradient, not the CTC one's
    joint = [n for n in plain if n.startswith("joint_network.")]
    assert max(float((rnnt[n] - plain[n]).abs().max()) for n in joint) > 1e-6
    assert max(float((ctc[n] - plain[n]).abs().max()) for n in joint) < 1e-7
    ctc_args = OmniASRTask.get_parser().parse_args(
        tiny_asr.train_flags(Path("stats"), Path("exp"), "omni_conformer") + ["--normalize", "none"])
    ctc_args.token_list = args.token_list
    ctc_model = OmniASRTask.build_model(ctc_args)
    cfg = SupernetConfig.from_dict({"distill_weight": 0.5, "distill_head": "transducer"})
    with pytest.raises(ValueError, match="distill_head: transducer .*has none.*use distill_head: ctc"):
        TaggedModel(ctc_model, SupernetState(cfg, ctc_model.encoder, accum_grad=1))
    with pytest.raises(ValueError, match="distill_head='joint': expected ctc or transducer"):
        SupernetConfig.from_dict({"distill_weight": 0.5, "distill_head": "joint"})
