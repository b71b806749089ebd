"""lm.onnx: one batched RNN LM step in ONNX Runtime equals TorchLM; the ONNX recognizer fused
with it decodes as the PyTorch streaming recognizer with TorchLM; what the export refuses."""

from __future__ import annotations

import json
import shutil

import yaml

import numpy as np
import pytest
import soundfile
from espnet2.lm.transformer_lm import TransformerLM
from espnet2.tasks.lm import LMTask
from export_dummies import TOKENS, load_supernet, make_experiment

from espnet_omni.bin import asr_inference_streaming, export_onnx as export_onnx_bin
from espnet_omni.export.onnx_export import OnnxExportError, export_onnx
from espnet_omni.export.onnx_lm import export_onnx_lm
from espnet_omni.inference.lm_scorer import TorchLM
from espnet_omni.inference.onnx_lm import OnnxLM
from espnet_omni.inference.onnx_recognizer import OnnxStreamingRecognizer
from espnet_omni.inference.streaming_recognizer import StreamingRecognizer
from espnet_omni.nets.chunk_config import StreamingConfig
from espnet_omni.testing.tiny_lm import write_tiny_lm

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
CFG = StreamingConfig(chunk_size=4, left_chunks=2)
FS = 16000
BEAM, LM_WEIGHT, PENALTY = 4, 0.5, 0.2


@pytest.fixture(scope="module")
def asr(tmp_path_factory):
    """A random tiny CTC supernet (config, weights) and its streaming export (no LM)."""
    root = tmp_path_factory.mktemp("onnx_lm")
    config, weights = make_experiment(root / "asr")
    model, _ = load_supernet(config, weights)
    export_onnx(model, root / "onnx", CFG, modes=("streaming",))
    return config, weights, root / "onnx"


def _export_dir(asr, tmp_path):
    """A fresh copy of the ASR export (the LM is added to it)."""
    return shutil.copytree(asr[2], tmp_path / "onnx")


def _lm(tmp_path, rnn_type="lstm", tokens=TOKENS, **kw):
    """A random 2-layer RNN LM's (config, weights)."""
    return write_tiny_lm(tmp_path / f"lm_{rnn_type}_{len(tokens)}", tokens, nlayers=2, rnn_type=rnn_type, **kw)


def _state_arrays(state):
    """An LM state as a tuple of numpy arrays: TorchLM's (h, c) tensors (an LSTM) or h (a GRU)."""
    parts = state if isinstance(state, tuple) else (state,)
    return [np.asarray(p) for p in parts]


def _assert_same_beam(ref, got, atol):
    for a, b in zip(ref, got, strict=True):
        assert a.tokens == b.tokens
        np.testing.assert_allclose(b.logp, a.logp, atol=atol, rtol=0)
        for x, y in zip(_state_arrays(a.state), _state_arrays(b.state), strict=True):
            np.testing.assert_allclose(y, x, atol=atol, rtol=0)


@pytest.mark.parametrize("rnn_type", ["lstm", "gru"])
def test_lm_step_equals_torch_lm_for_a_batch_of_prefixes(asr, tmp_path, rnn_type):
    """From <sos>, four batched steps over a tree of prefixes (random parents and tokens):
    logp and states equal TorchLM's (1e-4); the int8 copy runs and stays close."""
    out = _export_dir(asr, tmp_path)
    config, weights = _lm(tmp_path, rnn_type)
    model, _ = LMTask.build_model_from_file(config, weights, "cpu")
    before = json.loads((out / "onnx.json").read_text())
    meta = export_onnx_lm(model, out, int8=True)
    assert {k: v for k, v in meta.items() if k not in ("lm", "sha256")} == {  # what the ASR export wrote is kept
        **{k: v for k, v in before.items() if k != "sha256"},
        "graphs": {**before["graphs"], "lm": "lm.onnx", "lm_int8": "lm.int8.onnx"}}
    assert meta["sha256"] == {**before["sha256"], "lm.onnx": meta["sha256"]["lm.onnx"],
                              "lm.int8.onnx": meta["sha256"]["lm.int8.onnx"]}  # the LM's graphs are tied too
    assert meta["lm"] == {"rnn_type": rnn_type, "layers": 2, "hidden": 16, "vocab_size": len(TOKENS),
                          "sos": len(TOKENS) - 1, "eos": len(TOKENS) - 1}
    assert json.loads((out / "onnx.json").read_text()) == meta
    ops = {n.op_type for n in onnx.load(str(out / "lm.int8.onnx")).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops
    lms = [TorchLM(model.lm, len(TOKENS)), OnnxLM(out), OnnxLM(out, int8=True)]
    beams = [[lm.start()] for lm in lms]
    rng = np.random.default_rng(0)
    for _ in range(4):
        parents = rng.integers(0, len(beams[0]), size=6)
        tokens = rng.integers(1, len(TOKENS) - 1, size=6)
        beams = [lm.advance([beam[i] for i in parents], tokens) for lm, beam in zip(lms, beams)]
        _assert_same_beam(beams[0], beams[1], atol=1e-4)
        # int8: ONNX Runtime's kernels differ by CPU (on an AMD EPYC without VNNI the random LM's
        # logp moved by up to 0.05 in 4 steps of the GRU); the float graph above is the exact check.
        _assert_same_beam(beams[0], beams[2], atol=0.1)


def _data_dir(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for i, size in enumerate((8000, 5600, 11200)):
        soundfile.write(data / f"u{i}.wav", rng.uniform(-0.5, 0.5, size).astype(np.float32), FS)
        lines.append(f"u{i} {data / f'u{i}.wav'}\n")
    (data / "wav.scp").write_text("".join(lines))
    return data


def _decode(tmp_path, name, args):
    asr_inference_streaming.main([*args, "--data_dir", str(tmp_path / "data"), "--output_dir",
                                  str(tmp_path / name), "--beam_size", str(BEAM), "--penalty", str(PENALTY)])
    return (tmp_path / name / "text").read_text()


def test_onnx_recognizer_with_lm_equals_torch_recognizer_with_torch_lm(asr, tmp_path):
    """bin/export_onnx --lm_train_config/--lm_file, then a data dir decoded chunk by chunk:
    ONNX (lm_weight from --lm_weight or --decode_config) = PyTorch with TorchLM, and the LM
    changes the result."""
    asr_config, asr_weights, _ = asr
    lm_config, lm_weights = _lm(tmp_path, scale=4.0)
    out = tmp_path / "onnx"
    export_onnx_bin.main(["--asr_train_config", str(asr_config), "--asr_model_file", str(asr_weights),
                          "--out_dir", str(out), "--modes", "streaming", "--chunk_size", "4",
                          "--left_chunks", "2", "--int8", "true",
                          "--lm_train_config", str(lm_config), "--lm_file", str(lm_weights)])
    graphs = json.loads((out / "onnx.json").read_text())["graphs"]
    assert {"lm", "lm_int8", "streaming", "streaming_int8"} <= set(graphs)
    _data_dir(tmp_path)
    onnx_lm = _decode(tmp_path, "onnx_lm", ["--onnx_dir", str(out), "--lm_weight", str(LM_WEIGHT)])
    torch_lm = _decode(tmp_path, "torch_lm", [
        "--asr_train_config", str(asr_config), "--asr_model_file", str(asr_weights), "--chunk_size", "4",
        "--left_chunks", "2", "--lm_train_config", str(lm_config), "--lm_file", str(lm_weights),
        "--lm_weight", str(LM_WEIGHT)])
    assert onnx_lm == torch_lm
    no_lm = _decode(tmp_path, "onnx_no_lm", ["--onnx_dir", str(out)])
    assert no_lm != onnx_lm  # the LM changed some hypothesis
    (tmp_path / "decode.yaml").write_text(f"lm_weight: {LM_WEIGHT}\nctc_weight: 1.0\n")
    assert _decode(tmp_path, "onnx_conf", ["--onnx_dir", str(out), "--decode_config",
                                           str(tmp_path / "decode.yaml")]) == onnx_lm
    int8 = _decode(tmp_path, "onnx_int8", ["--onnx_dir", str(out), "--int8", "--lm_weight", str(LM_WEIGHT)])
    assert len(int8.splitlines()) == 3
    opts = dict(beam_size=BEAM, lm_weight=LM_WEIGHT, length_bonus=PENALTY)
    recs = [OnnxStreamingRecognizer(out, **opts),
            StreamingRecognizer.from_files(asr_config, asr_weights, CFG, lm_train_config=lm_config,
                                           lm_file=lm_weights, **opts)]
    wave = soundfile.read(tmp_path / "data" / "u2.wav", dtype="float32")[0]
    for rec in recs:
        rec.feed(wave)
        rec.finish()
    assert recs[0].search.finalized  # the LM's end-of-sentence score went in
    got, want = (rec.search.nbest() for rec in recs)  # the whole beam, CTC + LM + bonus scores
    assert [h for h, _ in got] == [h for h, _ in want]
    np.testing.assert_allclose([v for _, v in got], [v for _, v in want], atol=1e-3, rtol=0)


def test_refusals(asr, tmp_path):
    """No lm.onnx in the export; one of --lm_train_config/--lm_file; a truncated LM file; a
    Transformer LM; an LM of another token list: each one line naming what is expected, before
    any graph is written."""
    asr_config, asr_weights, plain = asr
    with pytest.raises(ValueError, match="no lm graph: export with --lm_train_config/--lm_file"):
        OnnxStreamingRecognizer(plain, beam_size=BEAM, lm_weight=1.0)
    _data_dir(tmp_path)
    with pytest.raises(SystemExit, match="no lm graph: export with --lm_train_config/--lm_file"):
        _decode(tmp_path, "x", ["--onnx_dir", str(plain), "--lm_weight", "1.0"])
    OnnxStreamingRecognizer(plain, beam_size=BEAM, lm_weight=0.0)  # no LM asked for: none needed
    lm_config, lm_weights = _lm(tmp_path)
    export = ["--asr_train_config", str(asr_config), "--asr_model_file", str(asr_weights),
              "--out_dir", str(tmp_path / "out")]
    with pytest.raises(SystemExit, match="give both --lm_train_config and --lm_file, or neither"):
        export_onnx_bin.main([*export, "--lm_file", str(lm_weights)])
    cut = tmp_path / "cut.pth"  # half a copy
    cut.write_bytes(lm_weights.read_bytes()[: lm_weights.stat().st_size // 2])
    with pytest.raises(SystemExit, match=r"cut\.pth: truncated or not a PyTorch checkpoint"):
        export_onnx_bin.main([*export, "--lm_train_config", str(lm_config), "--lm_file", str(cut)])
    tf_config = tmp_path / "tf.yaml"  # a Transformer LM's config: refused before its weights are read
    tf_config.write_text(yaml.safe_dump({**yaml.safe_load(lm_config.read_text()), "lm": "transformer"}))
    with pytest.raises(SystemExit, match=r"tf\.yaml: lm transformer: the ONNX LM export supports lm: seq_rnn"):
        export_onnx_bin.main([*export, "--lm_train_config", str(tf_config), "--lm_file", str(lm_weights)])
    with pytest.raises(OnnxExportError, match="lm TransformerLM: the ONNX LM export supports lm: seq_rnn"):
        export_onnx_lm(TransformerLM(len(TOKENS), embed_unit=8, att_unit=8, head=2, unit=16, layer=1),
                       _export_dir(asr, tmp_path / "t"))
    other_config, other_weights = _lm(tmp_path, tokens=TOKENS[:-1] + ["d", TOKENS[-1]])
    with pytest.raises(SystemExit, match="the LM was trained with another token list"):
        export_onnx_bin.main([*export, "--lm_train_config", str(other_config), "--lm_file", str(other_weights)])
    other, _ = LMTask.build_model_from_file(other_config, other_weights, "cpu")
    with pytest.raises(OnnxExportError, match="lm vocab_size 7: the ASR export .* has 6 tokens"):
        export_onnx_lm(other, _export_dir(asr, tmp_path))
    assert not (tmp_path / "out").exists()
    out = _export_dir(asr, tmp_path / "f")
    export_onnx_lm(LMTask.build_model_from_file(lm_config, lm_weights, "cpu")[0], out)
    with pytest.raises(ValueError, match=r"no lm_int8 graph: .* --int8 true"):
        OnnxLM(out, int8=True)
