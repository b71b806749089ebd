"""ONNX export of ESPnet's RNN language model (``lm: seq_rnn``): one LM step for a batch.

``lm.onnx`` (:class:`LMStepGraph`) advances ``B`` prefixes by one token each, the recurrent
state as explicit tensors (like ``decoder.onnx`` of a transducer export):

* inputs: ``token (B,)`` int64 (the prefixes' last tokens; ``<sos>`` first), ``h (L, B, H)``
  float32 and, for an LSTM only, ``c (L, B, H)`` (zeros before ``<sos>``);
* outputs: ``logp (B, V)``, the log-softmax of the next token's logits (ESPnet's
  ``SequentialRNNLM.batch_score``), ``h_out`` and (LSTM) ``c_out`` ``(L, B, H)``.

``B`` is a dynamic axis: a streaming beam search sends all the prefixes it grew in a frame in
one call (:class:`~espnet_omni.inference.onnx_lm.OnnxLM`). :func:`export_onnx_lm` writes it
(and ``lm.int8.onnx`` with ``int8``) into an ASR export dir and records it in ``onnx.json``:
``graphs.lm`` / ``graphs.lm_int8`` and ``lm`` (``rnn_type``, ``layers``, ``hidden``,
``vocab_size``, ``sos``, ``eos``). Supported: ``SequentialRNNLM`` with ``rnn_type`` lstm, gru,
rnn_tanh or rnn_relu; another LM (``lm: transformer``) raises :class:`OnnxExportError`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Union

import torch
from torch import nn

from espnet_omni.export.onnx_export import OnnxExportError, _export, quantize_int8, record_digests

SUPPORTED = "lm: seq_rnn (SequentialRNNLM, rnn_type lstm, gru, rnn_tanh or rnn_relu)"


def _unsupported(what: str) -> OnnxExportError:
    return OnnxExportError(f"{what}: the ONNX LM export supports {SUPPORTED} only")


def exportable_lm(lm: nn.Module) -> nn.Module:
    """The ``SequentialRNNLM`` of ``lm`` (itself or an ``ESPnetLanguageModel``'s ``.lm``), else
    :class:`OnnxExportError` naming what is supported."""
    from espnet2.lm.seq_rnn_lm import SequentialRNNLM

    inner = getattr(lm, "lm", lm)
    if not isinstance(inner, SequentialRNNLM):
        raise _unsupported(f"lm {type(inner).__name__}")
    return inner


def lm_meta(lm: nn.Module) -> dict[str, Any]:
    """``onnx.json``'s ``lm`` entry: the state's shape and the special symbols."""
    rnn = exportable_lm(lm)
    vocab = rnn.decoder.out_features
    return {"rnn_type": rnn.rnn_type.lower(), "layers": rnn.nlayers, "hidden": rnn.nhid,
            "vocab_size": vocab, "sos": int(getattr(lm, "sos", vocab - 1)),
            "eos": int(getattr(lm, "eos", vocab - 1))}


class LMStepGraph(nn.Module):
    """One step of a ``SequentialRNNLM`` for a batch: ``(token, h[, c]) -> (logp, h_out[, c_out])``."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = exportable_lm(lm)
        self.lstm = isinstance(self.lm.rnn, nn.LSTM)

    def names(self) -> tuple[list[str], list[str]]:
        """ONNX input and output names."""
        if self.lstm:
            return ["token", "h", "c"], ["logp", "h_out", "c_out"]
        return ["token", "h"], ["logp", "h_out"]

    def forward(self, token: torch.Tensor, *state: torch.Tensor):
        """token (B,), state: h (L, B, H)[, c] -> logp (B, V), h_out[, c_out] (L, B, H)."""
        logits, new = self.lm(token.unsqueeze(1), tuple(state) if self.lstm else state[0])  # (B, 1, V)
        logp = logits[:, 0].log_softmax(dim=-1)
        return (logp, *new) if self.lstm else (logp, new)


@torch.no_grad()
def export_lm_graph(lm: nn.Module, path: Union[str, Path]) -> dict[str, Any]:
    """Write the one-step graph of ``lm`` to ``path``; returns its :func:`lm_meta`."""
    meta = lm_meta(lm)
    graph = LMStepGraph(lm).eval()  # dropout off
    state = torch.zeros(meta["layers"], 2, meta["hidden"])
    states = (state, state.clone()) if graph.lstm else (state,)
    ins, outs = graph.names()
    dynamic = {"token": {0: "B"}, "logp": {0: "B"}, **{n: {1: "B"} for n in ins[1:] + outs[1:]}}
    _export(graph, (torch.tensor([meta["sos"], 1]), *states), Path(path), ins, outs, dynamic)
    return meta


def export_onnx_lm(lm: nn.Module, out_dir: Union[str, Path], int8: bool = False) -> dict[str, Any]:
    """Write ``lm.onnx`` (+ ``lm.int8.onnx``) into the ASR export ``out_dir`` and record them in
    its ``onnx.json`` (which must exist: :func:`~espnet_omni.export.onnx_export.export_onnx`
    first); returns the updated ``onnx.json`` content."""
    out = Path(out_dir)
    meta_file = out / "onnx.json"
    if not meta_file.is_file():
        raise OnnxExportError(f"{meta_file}: not found: export the ASR model first (export_onnx); "
                              "the LM graph goes next to its graphs")
    meta = json.loads(meta_file.read_text())
    info = lm_meta(lm)
    n_tokens = len(meta.get("token_list") or [])
    if n_tokens != info["vocab_size"]:
        raise OnnxExportError(f"lm vocab_size {info['vocab_size']}: the ASR export {meta_file} has "
                              f"{n_tokens} tokens; train the LM with the ASR model's token list")
    export_lm_graph(lm, out / "lm.onnx")
    meta["graphs"]["lm"] = "lm.onnx"
    meta["graphs"].pop("lm_int8", None)
    if int8:
        quantize_int8(out / "lm.onnx", out / "lm.int8.onnx")
        meta["graphs"]["lm_int8"] = "lm.int8.onnx"
    meta["lm"] = info
    record_digests(out, meta)
    meta_file.write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def load_lm_for_export(asr_train_config: Union[str, Path], lm_train_config: Union[str, Path],
                       lm_file: Union[str, Path]) -> nn.Module:
    """ESPnet's LM task files -> its ``ESPnetLanguageModel`` (eval mode), refused before any export
    when its token list is not the ASR model's (:class:`~espnet_omni.tasks.lm_check.
    TokenListMismatch`) or it is not an RNN LM (:class:`OnnxExportError`); both name the config.
    A missing or truncated file: :class:`~espnet_omni.tasks.checkpoint.ModelFileError` naming it."""
    import yaml
    from espnet2.tasks.lm import LMTask

    from espnet_omni.tasks.lm_check import check_lm_token_list
    from espnet_omni.tasks.checkpoint import check_model_files, readable_checkpoints

    check_model_files(lm_train_config, lm_file)
    check_lm_token_list(asr_train_config, lm_train_config)
    kind = yaml.safe_load(Path(lm_train_config).read_text()).get("lm", "seq_rnn")
    if kind != "seq_rnn":  # refused before its weights are read
        raise _unsupported(f"{lm_train_config}: lm {kind}")
    with readable_checkpoints():
        model, _ = LMTask.build_model_from_file(str(lm_train_config), str(lm_file), "cpu")
    exportable_lm(model)
    return model.eval()
