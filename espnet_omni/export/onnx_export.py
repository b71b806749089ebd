"""ONNX export of a CTC Conformer, full-context and cached streaming.

Two graphs, both from global-MVN-normalised log-mel features to CTC
log-posteriors (the waveform front end stays outside, as in WeNet and
sherpa-onnx, which compute fbank in the host program):

* ``full.onnx`` (:class:`FullContextGraph`): inputs ``feats (B, T, D_in)``,
  ``feats_lengths (B,)``; outputs ``log_probs (B, T', V)``,
  ``log_probs_lengths (B,)``. The encoder's full-context forward.
* ``streaming.onnx`` (:class:`StreamingChunkGraph`): one call of the
  encoder's streaming step, :meth:`~espnet_omni.nets.chunk_step.ChunkStep.
  forward_chunk` (the one ``EncoderStream`` runs, traced), its state as
  explicit tensors like WeNet's and icefall's streaming exports. Inputs:
  ``feats (1, W, D_in)``, the feature window of ``C + R`` encoder frames
  (chunk and look-ahead: ``W = (C + R - 1) * stride + rf``, 67 for a 16-frame
  chunk of the conv2d front end without look-ahead; the host advances by
  ``C * stride``; a shorter last window flushes), then the caches
  (:mod:`espnet_omni.nets.chunk_step`): per block ``i`` ``k_cache_<i>``,
  ``v_cache_<i>`` ``(1, H_i, K_i, d_k)`` (fixed ``K_i`` with ``left_chunks
  >= 0``, growing otherwise), ``conv_cache_<i>`` ``(1, C_i, P)``, a lagging
  block's ``pending_<i>`` ``(1, C, D)``, and ``offset (1,)`` int64. Outputs:
  ``log_probs (1, n, V)`` (``n = C``; none in the first ``lag_chunks`` calls,
  the rest in the last one) and the new caches (``new_k_cache_<i>``, ...).

The streaming graph computes the encoder's streaming mode (chunk attention
with look-ahead, causal convolutions): chunk after chunk it equals the
simulated streaming forward of the whole utterance (tests). Supported:
``rel_pos`` + ``rel_selfattn`` (``rel_pos_type: latest``) and the ``conv2d*``
front ends, ``normalize_before``; heads and channels may differ per block
(``structured`` exports). Anything else raises :class:`OnnxExportError`
naming the component.

:func:`export_onnx` writes the graphs and ``onnx.json`` (token list, chunk
config, geometry, window and advance, the cache shapes, ``lag_chunks``) next to
them: a host needs nothing else to run ``streaming.onnx``
(:func:`~espnet_omni.nets.chunk_step.initial_caches` builds the first caches);
:func:`quantize_int8` makes the dynamic int8 copies (weights int8, activations
quantised at run time).
The exporter is torch's TorchScript-based one (``dynamo=False``): torch.export
cannot trace ESPnet's data-dependent padding masks.

A transducer model (``model: transducer_torchaudio``) exports the same two
encoder graphs with ``encoder_out`` (``(B, T', D)``, resp. ``(1, n, D)``) in
place of the CTC log-posteriors, plus its prediction and joint networks:

* ``decoder.onnx`` (:class:`PredictionStepGraph`): one step of the
  prediction network for ``N`` hypotheses: ``token (N, 1)`` int64, ``h``, ``c``
  ``(L, N, H)`` (``c`` unused by a GRU) -> ``dec_out (N, D_dec)``, ``new_h``,
  ``new_c`` (``N`` dynamic: a beam search steps all its hypotheses at once);
* ``joiner.onnx`` (:class:`JointGraph`): ``encoder_out (N, D)``,
  ``dec_out (N, D_dec)`` -> ``logits (N, V)``.

``onnx.json`` says ``"head": "transducer"`` and the prediction network's
shape; :class:`~espnet_omni.inference.onnx_recognizer.OnnxStreamingRecognizer`
decodes it chunk by chunk, greedy or by modified beam search
(:mod:`espnet_omni.inference.onnx_transducer`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from espnet2.legacy.nets.pytorch_backend.conformer.convolution import ConvolutionModule
from espnet2.legacy.nets.pytorch_backend.transformer.attention import RelPositionMultiHeadedAttention
from espnet2.legacy.nets.pytorch_backend.transformer.embedding import RelPositionalEncoding
from espnet2.layers.global_mvn import GlobalMVN

from espnet_omni.nets.chunk_config import StreamingConfig
from espnet_omni.nets.chunk_step import ChunkStep, initial_caches, subsample, subsampling_geometry
from espnet_omni.nets.pruned_conv_module import PrunedConvolutionModule
from espnet_omni.nets.transducer import is_transducer

OPSET = 17


class OnnxExportError(ValueError):
    """The model has a component the ONNX export cannot express (named)."""


def _check_exportable(model: nn.Module, streaming: bool) -> None:
    enc = model.encoder
    for name in ("preencoder", "postencoder"):
        if getattr(model, name, None) is not None:
            raise OnnxExportError(f"{name} {type(getattr(model, name)).__name__}: not exported; "
                                  "ONNX export covers normalize + encoder + CTC")
    if model.normalize is not None and not isinstance(model.normalize, GlobalMVN):
        raise OnnxExportError(f"normalize {type(model.normalize).__name__}: only global_mvn (or none) is exported")
    if getattr(model, "ctc", None) is None and not is_transducer(model):
        raise OnnxExportError("the model has no CTC head (ctc_weight 0): the ONNX graphs output CTC posteriors")
    if is_transducer(model) and getattr(model.decoder, "dtype", None) not in ("lstm", "gru"):
        raise OnnxExportError(f"decoder {type(model.decoder).__name__}: the transducer export supports ESPnet's "
                              "TransducerDecoder (rnn_type lstm or gru)")
    if not hasattr(enc, "encoders") or not hasattr(enc, "embed"):
        raise OnnxExportError(f"encoder {type(enc).__name__}: not a Conformer encoder")
    if not streaming:
        return
    try:
        subsampling_geometry(enc.embed)
    except (AttributeError, TypeError):
        raise OnnxExportError(f"front end {type(enc.embed).__name__}: streaming export needs a conv2d* "
                              "subsampling (input_layer conv2d, conv2d6, conv2d8)") from None
    if type(enc.embed.pos_enc) is not RelPositionalEncoding:
        raise OnnxExportError(f"positional encoding {type(enc.embed.pos_enc).__name__}: streaming export "
                              "supports rel_pos with rel_pos_type latest")
    if not getattr(enc, "normalize_before", True):
        raise OnnxExportError("normalize_before: false is not supported by the streaming export")
    if getattr(enc, "interctc_layer_idx", None):
        raise OnnxExportError(f"interctc_layer_idx {enc.interctc_layer_idx}: not supported by the streaming export")
    for i, block in enumerate(enc.encoders):
        attn = block.self_attn
        if type(attn) is not RelPositionMultiHeadedAttention or attn.zero_triu:
            raise OnnxExportError(f"encoders.{i}.self_attn {type(attn).__name__}: streaming export supports "
                                  "RelPositionMultiHeadedAttention (rel_selfattn, zero_triu false)")
        if getattr(block, "concat_after", False) or not block.normalize_before:
            raise OnnxExportError(f"encoders.{i}: concat_after / normalize_before false not supported")
        conv = block.conv_module
        if isinstance(conv, PrunedConvolutionModule) and conv.dead_out.shape[1]:
            raise OnnxExportError(
                f"encoders.{i}.conv_module: {conv.dead_out.shape[1]} dead channels of a row export "
                "(computed from the utterance length): export a structured sub-network instead")
        if conv is not None and not isinstance(conv, ConvolutionModule):
            raise OnnxExportError(f"encoders.{i}.conv_module {type(conv).__name__}: not supported")


def _ctc(model: nn.Module) -> Optional[nn.Module]:
    """The CTC head the encoder graphs end with (None: a transducer's graphs output encoder frames)."""
    return None if is_transducer(model) else model.ctc


def _output_name(model: nn.Module) -> str:
    """The encoder graphs' output: ``encoder_out`` (a transducer's) or ``log_probs`` (CTC)."""
    return "encoder_out" if is_transducer(model) else "log_probs"


class PredictionStepGraph(nn.Module):
    """One step of a transducer's prediction network (ESPnet's ``TransducerDecoder``) for N
    hypotheses: ``token (N, 1)``, ``h``, ``c`` ``(L, N, H)`` -> ``(N, D_dec)``, new ``h``, ``c``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.decoder = model.decoder

    def forward(self, token: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        dec = self.decoder
        x = dec.embed(token)  # (N, 1, D_emb)
        hs, cs = [], []
        for layer in range(dec.dlayers):
            if dec.dtype == "lstm":
                x, (h_i, c_i) = dec.decoder[layer](x, (h[layer: layer + 1], c[layer: layer + 1]))
            else:
                x, h_i = dec.decoder[layer](x, h[layer: layer + 1])
                c_i = c[layer: layer + 1]
            hs.append(h_i)
            cs.append(c_i)
        return x[:, 0], torch.cat(hs), torch.cat(cs)


class JointGraph(nn.Module):
    """A transducer's joint network on pairs of encoder and prediction frames."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.joint = model.joint_network

    def forward(self, enc: torch.Tensor, dec: torch.Tensor):
        return self.joint(enc, dec)


class FullContextGraph(nn.Module):
    """normalize -> encoder (full context) -> CTC log-softmax."""

    def __init__(self, model: nn.Module):
        super().__init__()
        _check_exportable(model, streaming=False)
        self.normalize, self.encoder, self.ctc = model.normalize, model.encoder, _ctc(model)

    def forward(self, feats: torch.Tensor, feats_lengths: torch.Tensor):
        if self.normalize is not None:  # ESPnet's GlobalMVN works in place without grad: a copy
            feats, feats_lengths = self.normalize(feats.clone(), feats_lengths)
        out, olens, _ = self.encoder(feats, feats_lengths)
        return (out if self.ctc is None else self.ctc.log_softmax(out)), olens


class StreamingChunkGraph(nn.Module):
    """normalize -> front end -> one call of the encoder's streaming step
    (:meth:`~espnet_omni.nets.chunk_step.ChunkStep.forward_chunk`, traced as it is) -> CTC
    log-softmax (a transducer: the encoder frames). See the module docstring."""

    def __init__(self, model: nn.Module, cfg: StreamingConfig):
        super().__init__()
        _check_exportable(model, streaming=True)
        self.normalize, self.ctc, self.cfg = model.normalize, _ctc(model), cfg
        self.step = ChunkStep(model.encoder, cfg)
        self.step.position_table()  # before tracing: a constant of the graph
        self.out_name = _output_name(model)
        self.stride, self.field = subsampling_geometry(model.encoder.embed)
        self.window = (self.step.window - 1) * self.stride + self.field  # features of C + R frames

    def cache_shapes(self) -> list[dict[str, Any]]:
        """Per block: :meth:`~espnet_omni.nets.chunk_step.BlockStep.shapes`."""
        return self.step.cache_shapes()

    def forward(self, feats: torch.Tensor, *caches: torch.Tensor):
        if self.normalize is not None:  # in place without grad (GlobalMVN): a copy
            feats, _ = self.normalize(feats.clone(), None)
        x, new = self.step.forward_chunk(subsample(self.step.encoder.embed, feats), list(caches))
        return (x if self.ctc is None else self.ctc.log_softmax(x), *new)

    def names(self) -> tuple[list[str], list[str]]:
        """ONNX input and output names, in the order of the caches."""
        ins = []
        for i, block in enumerate(self.step.blocks):
            ins += [f"k_cache_{i}", f"v_cache_{i}", f"conv_cache_{i}"] + ([f"pending_{i}"] if block.pending else [])
        ins.append("offset")
        return ["feats", *ins], [self.out_name] + [f"new_{name}" for name in ins]


def _trace_caches(graph: StreamingChunkGraph, d_in: int) -> list[torch.Tensor]:
    """Caches to trace the streaming graph with: after two calls on random features, so that
    no cache is empty where it grows (``left_chunks -1``) and the offset is past 0."""
    caches = initial_caches(graph.cache_shapes())
    for _ in range(2):
        caches = list(graph(torch.randn(1, graph.window, d_in), *caches)[1:])
    return caches


def _export(module: nn.Module, args: tuple, path: Path, inputs, outputs, dynamic) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python ints from shapes
        torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs,
                          dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)


def _export_full(model: nn.Module, out: Path, out_name: str, d_in: int) -> str:
    """``full.onnx``: features of any batch and length to the head's input; its file name."""
    graph = FullContextGraph(model).eval()
    feats = torch.randn(2, 120, d_in)
    lens = torch.tensor([120, 90])
    _export(graph, (feats, lens), out / "full.onnx", ["feats", "feats_lengths"],
            [out_name, f"{out_name}_lengths"],
            {"feats": {0: "B", 1: "T"}, "feats_lengths": {0: "B"}, out_name: {0: "B", 1: "T_out"},
             f"{out_name}_lengths": {0: "B"}})
    return "full.onnx"


def _export_streaming(model: nn.Module, cfg: StreamingConfig, out: Path, out_name: str,
                      d_in: int) -> tuple[str, dict[str, Any]]:
    """``streaming.onnx``: one chunk per call, the caches explicit; its file name and ``onnx.json``'s
    ``streaming`` entry."""
    graph = StreamingChunkGraph(model, cfg).eval()
    step, window = graph.step, graph.window
    caches = _trace_caches(graph, d_in)
    ins, outs = graph.names()
    dynamic = {"feats": {1: "W"}, out_name: {1: "n"}}
    if not step.bounded:  # the keys of every frame so far
        for i in range(len(model.encoder.encoders)):
            for kind in ("k", "v"):
                dynamic[f"{kind}_cache_{i}"] = dynamic[f"new_{kind}_cache_{i}"] = {2: f"K_{i}"}
    _export(graph, (torch.randn(1, window, d_in), *caches), out / "streaming.onnx", ins, outs, dynamic)
    return "streaming.onnx", {
        "config": cfg.to_dict(), "stride": graph.stride, "field": graph.field,
        "window": window, "advance": cfg.chunk_size * graph.stride,
        "cache_frames": cfg.left_chunks * cfg.chunk_size if step.bounded else -1,
        "lag_chunks": step.lag, "blocks": graph.cache_shapes(),
        # unlimited left context: positions reach this many frames at most
        "max_frames": step.max_frames()}


def _export_transducer(model: nn.Module, out: Path) -> dict[str, str]:
    """A transducer's ``decoder.onnx`` (one prediction step) and ``joiner.onnx``; their graph names."""
    dec = model.decoder
    h = torch.zeros(dec.dlayers, 2, dec.dunits)  # (L, N, H): N hypotheses, a dynamic axis
    _export(PredictionStepGraph(model).eval(), (torch.zeros(2, 1, dtype=torch.long), h, h.clone()),
            out / "decoder.onnx", ["token", "h", "c"], ["dec_out", "new_h", "new_c"],
            {"token": {0: "N"}, "dec_out": {0: "N"},
             **{name: {1: "N"} for name in ("h", "c", "new_h", "new_c")}})
    d_enc = model.encoder.output_size()
    _export(JointGraph(model).eval(), (torch.randn(3, d_enc), torch.randn(3, dec.dunits)), out / "joiner.onnx",
            ["encoder_out", "dec_out"], ["logits"],
            {"encoder_out": {0: "N"}, "dec_out": {0: "N"}, "logits": {0: "N"}})
    return {"decoder": "decoder.onnx", "joiner": "joiner.onnx"}


@torch.no_grad()
def export_onnx(model: nn.Module, out_dir: str | Path, streaming: Optional[StreamingConfig] = None,
                modes: tuple[str, ...] = ("full", "streaming"), token_list: Optional[list[str]] = None,
                int8: bool = False, token_type: Optional[str] = None,
                bpemodel: Optional[str | Path] = None) -> dict[str, Any]:
    """Write ``full.onnx`` and/or ``streaming.onnx`` (+ ``*.int8.onnx``) and ``onnx.json``.

    Args:
        model: an ``ESPnetASRModel`` (eval mode) with a Conformer encoder; a
            supernet's active sub-network is exported with its masks applied.
        streaming: chunk config of the streaming graph (default: the
            encoder's ``streaming_config``, else chunk 16, unlimited left).
        modes: which graphs.
        int8: also write dynamically quantised int8 copies.
        token_type, bpemodel: the training's tokenizer (for detokenisation by
            :class:`~espnet_omni.inference.onnx_recognizer.OnnxStreamingRecognizer`;
            the bpe model is copied next to the graphs).
    """
    unknown = sorted(set(modes) - {"full", "streaming"})
    if unknown or not modes:
        raise ValueError(f"modes {list(modes)}: expected one or both of 'full', 'streaming'")
    model.eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    enc = model.encoder
    if getattr(model, "frontend", None) is None:
        raise OnnxExportError("the model has no frontend: the graphs read its fbank features, of its size")
    d_in = model.frontend.output_size()
    meta: dict[str, Any] = {"token_list": list(token_list or getattr(model, "token_list", [])),
                            "blank_id": int(getattr(model, "blank_id", 0)), "input_size": d_in,
                            "token_type": token_type, "bpemodel": None,
                            **frontend_meta(model.frontend), "opset": OPSET, "graphs": {},
                            "head": "transducer" if is_transducer(model) else "ctc"}
    out_name = _output_name(model)
    if bpemodel is not None:  # the recognizer detokenises with it
        shutil.copyfile(bpemodel, out / Path(bpemodel).name)
        meta["bpemodel"] = Path(bpemodel).name
    if "full" in modes:
        meta["graphs"]["full"] = _export_full(model, out, out_name, d_in)
    if "streaming" in modes:
        cfg = streaming or getattr(enc, "streaming_config", None) or StreamingConfig(chunk_size=16)
        meta["graphs"]["streaming"], meta["streaming"] = _export_streaming(model, cfg, out, out_name, d_in)
    if is_transducer(model):
        meta["graphs"].update(_export_transducer(model, out))
        dec = model.decoder
        meta["transducer"] = {"rnn_type": dec.dtype, "layers": dec.dlayers, "hidden": dec.dunits}
    if int8:
        for mode, name in list(meta["graphs"].items()):
            if mode in ("decoder", "joiner"):
                continue  # small: kept in float
            q = name.replace(".onnx", ".int8.onnx")
            quantize_int8(out / name, out / q)
            meta["graphs"][f"{mode}_int8"] = q
    record_digests(out, meta)
    (out / "onnx.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def record_digests(out: Path, meta: dict[str, Any]) -> None:
    """``meta["sha256"]``: each graph file's digest, so that a loader refuses graphs that are not
    this export's (:func:`espnet_omni.inference.onnx_session.graph_session`)."""
    meta["sha256"] = {f: file_sha256(out / f) for f in sorted(set(meta["graphs"].values()))}


def frontend_meta(frontend: nn.Module) -> dict[str, Any]:
    """``fs`` and the ``DefaultFrontend`` options that rebuild ``frontend`` (no weights)."""
    from espnet2.asr.frontend.default import DefaultFrontend

    if not isinstance(frontend, DefaultFrontend) or frontend.stft is None:
        raise OnnxExportError(f"frontend {type(frontend).__name__}: the ONNX recognizer rebuilds "
                              "ESPnet's default (fbank) frontend only")
    stft, mel = frontend.stft, frontend.logmel.mel_options
    return {"fs": int(mel["sr"]), "frontend_conf": {
        "n_fft": stft.n_fft, "win_length": stft.win_length, "hop_length": stft.hop_length,
        "window": stft.window, "center": stft.center, "normalized": stft.normalized,
        "onesided": stft.onesided, "n_mels": mel["n_mels"],
        "fmin": None if mel["fmin"] is None else int(mel["fmin"]),  # DefaultFrontend wants ints
        "fmax": None if mel["fmax"] is None else int(mel["fmax"]),
        "htk": mel["htk"]}}


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantisation (weights int8, activations at run time) of MatMul/Gemm."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
