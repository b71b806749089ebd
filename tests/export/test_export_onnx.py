"""ONNX export: ONNX Runtime equals PyTorch, full-context and chunk by chunk with caches."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import soundfile
import torch
from export_dummies import (
    encode,
    load_supernet,
    make_experiment,
    pruned_registered,  # noqa: F401  (fixture)
    random_subnet,
    speech_batch,
)

from espnet_omni.bin import asr_inference_streaming, export_onnx as export_onnx_bin
from espnet_omni.export import export_asr_model
from espnet_omni.export.onnx_export import FullContextGraph, OnnxExportError, export_onnx
from espnet_omni.inference.onnx_recognizer import OnnxStreamingRecognizer
from espnet_omni.inference.streaming_recognizer import StreamingRecognizer
from espnet_omni.nets.chunk_config import StreamingConfig
from espnet_omni.tasks import OmniASRTask

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
pytestmark = pytest.mark.usefixtures("pruned_registered")
CFG = StreamingConfig(chunk_size=4, left_chunks=2)
FS = 16000


@pytest.fixture(scope="module")
def group_exp(tmp_path_factory):
    """A random group supernet with global MVN, a sub-network, and its structured export."""
    root = tmp_path_factory.mktemp("onnx")
    config, weights = make_experiment(root / "sup", mask_granularity="group", prune_frontend=True,
                                      global_mvn=True)
    model, conf = load_supernet(config, weights)
    subnet = random_subnet(model, choices=(0.25, 0.5))
    subnet.to_yaml(root / "subnet.yaml")
    export_asr_model(model, conf, subnet, "structured", root / "export")
    return root, model, subnet


def _waves(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-0.5, 0.5, size).astype(np.float32) for size in (8000, 5600, 11200)[:n]]


def test_full_context_onnx_equals_pytorch(group_exp, tmp_path):
    root, supernet, _ = group_exp
    exported, _ = OmniASRTask.build_model_from_file(root / "export" / "config.yaml",
                                                    root / "export" / "model.pth", "cpu")
    meta = export_onnx(exported.eval(), tmp_path, modes=("full",))
    assert meta["graphs"] == {"full": "full.onnx"}
    speech, lengths = speech_batch()
    with torch.no_grad():
        feats, flens = exported._extract_feats(speech, lengths)
        ref, rlens = encode(supernet, speech, lengths)  # the masked supernet
        ref = supernet.ctc.log_softmax(ref)
    before = feats.clone()
    with torch.no_grad():
        FullContextGraph(exported)(feats, flens)
    assert torch.equal(feats, before)  # the torch graph leaves its input alone (GlobalMVN is in place)
    sess = ort.InferenceSession(str(tmp_path / "full.onnx"), providers=["CPUExecutionProvider"])
    logp, olens = sess.run(None, {"feats": feats.numpy(), "feats_lengths": flens.numpy()})
    assert olens.tolist() == rlens.tolist()
    for b, n in enumerate(rlens.tolist()):
        np.testing.assert_allclose(logp[b, :n], ref[b, :n].numpy(), atol=1e-4, rtol=0)


def _torch_streaming(root, waves):
    rec = StreamingRecognizer.from_files(root / "sup" / "config.yaml", root / "sup" / "model.pth",
                                         CFG, subnet=root / "subnet.yaml")
    out = []
    for w in waves:
        rec.reset()
        for start in range(0, w.size, 1000):  # pieces that do not align with chunks
            rec.feed(w[start:start + 1000], FS)
        rec.finish()
        with torch.no_grad():
            logp = rec.model.ctc.log_softmax(rec.encoder_output()[None])[0].numpy()
        out.append((rec.token_ids(), logp))
    return out


@pytest.mark.parametrize("source", ["supernet", "structured"])
def test_streaming_onnx_equals_pytorch_streaming(group_exp, tmp_path, source):
    """Chunk by chunk, the ONNX graph with its cache tensors gives the torch streaming
    recognizer's posteriors (1e-4) and hypotheses, from the supernet with its sub-network
    active or from the sub-network's structured export."""
    root, _, _ = group_exp
    args = ["--out_dir", str(tmp_path), "--modes", "streaming", "--chunk_size", str(CFG.chunk_size),
            "--left_chunks", str(CFG.left_chunks)]
    if source == "supernet":
        args += ["--asr_train_config", str(root / "sup" / "config.yaml"),
                 "--asr_model_file", str(root / "sup" / "model.pth"), "--subnet", str(root / "subnet.yaml")]
    else:
        args += ["--asr_train_config", str(root / "export" / "config.yaml"),
                 "--asr_model_file", str(root / "export" / "model.pth")]
    export_onnx_bin.main(args)
    meta = json.loads((tmp_path / "onnx.json").read_text())
    assert meta["streaming"]["window"] == (CFG.chunk_size - 1) * 4 + 7
    waves = _waves()
    rec = OnnxStreamingRecognizer(tmp_path)
    for w, (ids, logp) in zip(waves, _torch_streaming(root, waves)):
        rec.reset()
        partials = [rec.feed(w[s:s + 1000], FS) for s in range(0, w.size, 1000)]
        rec.finish()
        assert rec.token_ids() == ids
        got = rec.posteriors()
        assert got.shape == logp.shape and len(rec.chunk_ms) == -(-logp.shape[0] // CFG.chunk_size)
        np.testing.assert_allclose(got, logp, atol=1e-4, rtol=0)
        assert len(partials) > 1


def test_onnx_data_dir_decode_matches_torch_and_int8_runs(group_exp, tmp_path):
    root, _, _ = group_exp
    data = tmp_path / "data"
    data.mkdir()
    lines = []
    for i, w in enumerate(_waves()):
        soundfile.write(data / f"u{i}.wav", w, FS)
        lines.append(f"u{i} {data / f'u{i}.wav'}\n")
    (data / "wav.scp").write_text("".join(lines))
    onnx_dir = tmp_path / "onnx"
    export_onnx_bin.main(["--asr_train_config", str(root / "export" / "config.yaml"),
                          "--asr_model_file", str(root / "export" / "model.pth"), "--out_dir", str(onnx_dir),
                          "--chunk_size", "4", "--left_chunks", "2", "--int8", "true"])
    ops = {n.op_type for n in onnx.load(str(onnx_dir / "streaming.int8.onnx")).graph.node}
    assert "MatMulInteger" in ops and "DynamicQuantizeLinear" in ops  # int8 weights, dynamic activations
    asr_inference_streaming.main(["--onnx_dir", str(onnx_dir), "--data_dir", str(data),
                                  "--output_dir", str(tmp_path / "onnx_dec")])
    asr_inference_streaming.main(["--asr_train_config", str(root / "sup" / "config.yaml"),
                                  "--asr_model_file", str(root / "sup" / "model.pth"),
                                  "--subnet", str(root / "subnet.yaml"), "--chunk_size", "4",
                                  "--left_chunks", "2", "--data_dir", str(data),
                                  "--output_dir", str(tmp_path / "torch_dec")])
    assert (tmp_path / "onnx_dec" / "text").read_text() == (tmp_path / "torch_dec" / "text").read_text()
    lat = json.loads((tmp_path / "onnx_dec" / "latency.json").read_text())
    assert lat["num_utterances"] == 3 and lat["rtf"] > 0 and lat["streaming"]["chunk_size"] == 4
    asr_inference_streaming.main(["--onnx_dir", str(onnx_dir), "--int8", "--data_dir", str(data),
                                  "--output_dir", str(tmp_path / "int8_dec")])
    assert len((tmp_path / "int8_dec" / "text").read_text().splitlines()) == 3


@pytest.mark.parametrize("subnet", ["dense", "sparse"])
@pytest.mark.parametrize("cfg", [StreamingConfig(4, left_chunks=2, lookahead=2),
                                 StreamingConfig(4, left_chunks=-1, lookahead=3, lookahead_layers=1)], ids=str)
def test_streaming_onnx_with_lookahead_equals_pytorch_chunk_by_chunk(group_exp, tmp_path, cfg, subnet):
    """With look-ahead (block 1 lagging a chunk, or only block 0's), OnnxStreamingRecognizer over the
    graph gives the torch StreamingRecognizer's posteriors and hypotheses with the same config, the
    dense network or the sub-network active; a short utterance ends while block 1 still lags."""
    root, supernet, sub = group_exp
    if subnet == "dense":
        supernet.encoder.set_max_net()
    try:
        meta = export_onnx(supernet, tmp_path, cfg, modes=("streaming",))
        ref = StreamingRecognizer(supernet, cfg)
        onnx_rec = OnnxStreamingRecognizer(tmp_path)
        assert meta["streaming"]["window"] == (cfg.chunk_size + cfg.lookahead - 1) * 4 + 7
        assert meta["streaming"]["lag_chunks"] == (1 if cfg.lookahead_layers == -1 else 0)
        for w in [*_waves(), _waves(1, seed=1)[0][:1500]]:
            for rec in (ref, onnx_rec):
                rec.reset()
                for start in range(0, w.size, 700):
                    rec.feed(w[start:start + 700], FS)
                rec.finish()
            logp = ref.posteriors()
            assert logp.shape[0] > 0 and onnx_rec.token_ids() == ref.token_ids()
            np.testing.assert_allclose(onnx_rec.posteriors(), logp, atol=1e-4, rtol=0)
    finally:
        supernet.encoder.set_active_subnet(sub)


def test_unexportable_components_are_named(tmp_path):
    config, weights = make_experiment(tmp_path / "row", mask_granularity="row")
    model, conf = load_supernet(config, weights)
    subnet = random_subnet(model)
    export_asr_model(model, conf, subnet, "row", tmp_path / "row_export")
    row, _ = OmniASRTask.build_model_from_file(tmp_path / "row_export" / "config.yaml",
                                               tmp_path / "row_export" / "model.pth", "cpu")
    if any(b.conv_module.dead_out.shape[1] for b in row.encoder.encoders):
        with pytest.raises(OnnxExportError, match=r"encoders\.\d\.conv_module: \d+ dead channels"):
            export_onnx(row.eval(), tmp_path / "x", CFG, modes=("streaming",))
    abs_conf = dict(pos_enc_layer_type="abs_pos", selfattention_layer_type="selfattn", rel_pos_type="legacy")
    model_abs, _ = load_supernet(*make_experiment(tmp_path / "abs", **abs_conf))
    with pytest.raises(OnnxExportError, match="positional encoding PositionalEncoding"):
        export_onnx(model_abs, tmp_path / "z", CFG, modes=("streaming",))
    with pytest.raises(ValueError, match="modes"):
        export_onnx(model, tmp_path / "w", CFG, modes=("offline",))


def test_recognizer_refuses_bad_audio(group_exp, tmp_path):
    root, supernet, _ = group_exp
    export_onnx(supernet, tmp_path, CFG, modes=("streaming",))
    rec = OnnxStreamingRecognizer(tmp_path)
    with pytest.raises(ValueError, match="8000 Hz but the model expects 16000"):
        rec.feed(np.zeros(800, np.float32), 8000)
    with pytest.raises(ValueError, match="mono"):
        rec.feed(np.zeros((800, 2), np.float32), FS)
    with pytest.raises(ValueError, match="no streaming_int8 graph"):
        OnnxStreamingRecognizer(tmp_path, int8=True)
    with pytest.raises(FileNotFoundError, match="onnx.json"):
        OnnxStreamingRecognizer(tmp_path / "nowhere")


def test_graphs_of_another_export_are_refused(group_exp, tmp_path, capsys):
    """onnx.json ties to its graphs by sha256: a streaming.onnx copied in from another model's
    export decoded silently before; now the recognizer names the file (issue 27 item 7)."""
    import shutil

    _, supernet, _ = group_exp
    a, b = tmp_path / "a", tmp_path / "b"
    export_onnx(supernet, a, CFG, modes=("streaming",), int8=True)
    meta = json.loads((a / "onnx.json").read_text())
    assert set(meta["sha256"]) == {"streaming.onnx", "streaming.int8.onnx"}
    OnnxStreamingRecognizer(a)  # its own graphs open
    other = copy.deepcopy(supernet)  # another model: other weights
    with torch.no_grad():
        for p in other.encoder.parameters():
            p.add_(0.01)
    export_onnx(other, b, CFG, modes=("streaming",))
    shutil.copy(b / "streaming.onnx", a / "streaming.onnx")
    with pytest.raises(ValueError, match=r"a/streaming.onnx: sha256 .* not this export's streaming graph"):
        OnnxStreamingRecognizer(a)
    (a / "streaming.int8.onnx").unlink()
    with pytest.raises(FileNotFoundError, match=r"streaming.int8.onnx: missing"):
        OnnxStreamingRecognizer(a, int8=True)
    with pytest.raises(SystemExit, match="error: --onnx_dir .*streaming.int8.onnx: missing"):
        asr_inference_streaming.main(["--onnx_dir", str(a), "--int8", "--data_dir", str(tmp_path),
                                      "--output_dir", str(tmp_path / "dec")])
