"""Streaming recognition with ONNX Runtime: the feed/finish API of StreamingRecognizer.

Usage::

    rec = OnnxStreamingRecognizer("exp/asr/onnx")    # a dir written by bin/export_onnx
    for piece in pieces:                              # np.ndarray (samples,), 16 kHz mono
        partial = rec.feed(piece)
    text = rec.finish()
    rec.reset()

Per ``feed``: incremental fbank (the training frontend, :class:`~espnet_omni.
inference.streaming_recognizer.FbankStream`, built from ``onnx.json``), then
``streaming.onnx`` once per complete encoder chunk (a window of ``window``
feature frames, advancing ``advance`` frames; the caches go back in), CTC
greedy or prefix beam search on its log-posteriors (a transducer export:
greedy RNN-T or modified beam search over ``decoder.onnx`` and ``joiner.onnx``,
:mod:`~espnet_omni.inference.onnx_transducer`). ``finish`` runs the last,
shorter chunk. With ``lm_weight > 0`` the prefix beam search fuses the export's ``lm.onnx``
(:class:`~espnet_omni.inference.onnx_lm.OnnxLM`), one batched LM step per frame, and
``finish`` adds its end-of-sentence score. No PyTorch model is loaded: torch only computes the fbank.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import List, Optional, Union

import numpy as np
import torch
from espnet2.asr.frontend.default import DefaultFrontend
from espnet2.text.build_tokenizer import build_tokenizer
from espnet2.text.token_id_converter import TokenIDConverter

from espnet_omni.nets.chunk_step import initial_caches
from espnet_omni.inference.ctc_decoder import make_ctc_search
from espnet_omni.inference.onnx_lm import OnnxLM
from espnet_omni.inference.onnx_session import graph_session
from espnet_omni.inference.onnx_transducer import make_onnx_transducer_search
from espnet_omni.inference.streaming_recognizer import FbankStream, check_audio
from espnet_omni.nets.chunk_config import StreamingConfig, StreamingLatency, algorithmic_latency


class OnnxStreamingRecognizer:
    """Chunk-by-chunk CTC recognizer over ``streaming.onnx``.

    Args:
        onnx_dir: the export directory (``onnx.json`` and the graphs).
        beam_size: 1 = CTC greedy; > 1 = CTC prefix beam search (a transducer export: greedy RNN-T,
            resp. modified beam search, :mod:`~espnet_omni.inference.onnx_transducer`).
        threads: ONNX Runtime intra-op threads.
        int8: run ``streaming.int8.onnx`` (and ``lm.int8.onnx``).
        lm_weight: > 0: CTC prefix beam search (a transducer: modified beam search) with the export's LM (``lm.onnx``, written by
            ``bin/export_onnx --lm_train_config --lm_file``) fused with this weight
            (:class:`~espnet_omni.inference.onnx_lm.OnnxLM`); ESPnet's ``lm_weight``.
        length_bonus: added per token (ESPnet's ``penalty``).
    """

    def __init__(self, onnx_dir: Union[str, Path], beam_size: int = 1, threads: int = 1,
                 int8: bool = False, lm_weight: float = 0.0, length_bonus: float = 0.0):
        import onnxruntime as ort

        self.dir = Path(onnx_dir)
        meta_file = self.dir / "onnx.json"
        if not meta_file.is_file():
            raise FileNotFoundError(f"{meta_file}: no onnx.json (write one with python -m espnet_omni.bin.export_onnx)")
        self.meta = json.loads(meta_file.read_text())
        key = "streaming_int8" if int8 else "streaming"
        if key not in self.meta["graphs"]:
            raise ValueError(f"{meta_file}: no {key} graph (export with --modes streaming{' --int8 true' if int8 else ''})")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = graph_session(self.dir, self.meta, key, opts)
        self.inputs = [i.name for i in self.session.get_inputs()]
        st = self.meta["streaming"]
        self.chunk, self.window, self.advance = st["config"]["chunk_size"], st["window"], st["advance"]
        self.stride, self.field = st["stride"], st["field"]
        self.blocks = st["blocks"]
        self.fs = int(self.meta["fs"])
        self.fbank = FbankStream(DefaultFrontend(fs=self.fs, **self.meta["frontend_conf"]))
        self.transducer = self.meta.get("head", "ctc") == "transducer"
        lm = OnnxLM(self.dir, int8=int8, session_options=opts) if lm_weight > 0 else None
        if self.transducer:  # RNN-T over the prediction and joint networks' graphs: greedy, or
            # modified beam search (with the LM)
            self.search = make_onnx_transducer_search(self.dir, self.meta, opts, beam_size, lm=lm,
                                                      lm_weight=lm_weight, length_bonus=length_bonus)
        else:
            self.search = make_ctc_search(beam_size, blank=self.meta["blank_id"], lm=lm, lm_weight=lm_weight,
                                          length_bonus=length_bonus)
        self.beam_size = beam_size
        self.cfg = StreamingConfig.from_dict(st["config"])
        token_type = self.meta.get("token_type")
        bpemodel = self.meta.get("bpemodel")
        self.tokenizer = None if token_type is None else build_tokenizer(
            token_type=token_type, bpemodel=None if bpemodel is None else str(self.dir / bpemodel))
        self.converter = TokenIDConverter(token_list=self.meta["token_list"])
        self.reset()

    def spawn(self) -> "OnnxStreamingRecognizer":
        """A recognizer of its own stream over the same ONNX Runtime sessions (``run`` is
        thread-safe) and options: front-end buffer, caches and search of its own, so streams
        can be fed from several threads (a server: one per connection)."""
        new = copy.copy(self)
        new.fbank = FbankStream(self.fbank.frontend)
        new.search = copy.copy(self.search)  # every search's reset() builds its state anew
        new.reset()
        return new

    def reset(self) -> None:
        """Start a new utterance."""
        self.fbank.reset()
        self.search.reset()
        self.feats = np.zeros((0, self.meta["input_size"]), np.float32)  # frames from self.start on
        self.caches = [c.numpy() for c in initial_caches(self.blocks)]
        self.frames = 0  # encoder frames computed
        self.log_probs: List[np.ndarray] = []
        self.chunk_ms: List[float] = []
        self._final: Optional[str] = None

    def check_audio(self, audio: np.ndarray, fs: int) -> np.ndarray:
        """``audio`` as ``feed`` takes it (mono float at the model's rate), else ValueError."""
        return check_audio(audio, fs, self.fs)

    def latency(self) -> StreamingLatency:
        """Algorithmic latency of the exported chunk config."""
        fc = self.meta["frontend_conf"]
        return algorithmic_latency(self.cfg, len(self.blocks), self.fs, fc["hop_length"], fc["n_fft"],
                                   self.stride, self.field, fc["center"])

    def chunk_samples(self) -> int:
        """Samples of audio per encoder chunk (a natural ``feed`` size)."""
        return self.advance * self.fbank.hop

    def _run(self, window: np.ndarray) -> None:
        limit = self.meta["streaming"].get("max_frames")
        n = (window.shape[0] - self.field) // self.stride + 1
        if limit is not None and self.frames + n > limit:
            raise RuntimeError(
                f"{self.dir}: the utterance reached {self.frames + n} encoder frames, beyond the {limit} "
                "the graph's positional table holds (unlimited left context): export with --left_chunks N")
        self.frames += min(n, self.chunk)  # the window's look-ahead frames come again next call
        tic = time.perf_counter()
        out = self.session.run(None, dict(zip(self.inputs, [window[None], *self.caches])))
        self.caches = out[1:]
        logp = out[0][0]  # (n, V) CTC log-posteriors, or (n, D) encoder frames of a transducer
        self.log_probs.append(logp)
        self.search.step(logp)
        self.chunk_ms.append((time.perf_counter() - tic) * 1000.0)

    def _consume(self, feats: torch.Tensor, final: bool) -> None:
        if feats.size(0):
            self.feats = np.concatenate([self.feats, feats.numpy().astype(np.float32)])
        while self.feats.shape[0] >= self.window:
            self._run(self.feats[: self.window])
            self.feats = self.feats[self.advance:]
        if final and self.feats.shape[0] >= self.field:
            n = (self.feats.shape[0] - self.field) // self.stride + 1
            self._run(self.feats[: (n - 1) * self.stride + self.field])
            self.feats = self.feats[n * self.stride:]

    def _text(self) -> str:
        tokens = self.converter.ids2tokens(self.search.best())
        return " ".join(tokens) if self.tokenizer is None else self.tokenizer.tokens2text(tokens)

    def feed(self, audio_chunk: np.ndarray, fs: int = 16000) -> str:
        """Add ``(samples,)`` float audio; returns the partial text so far."""
        if self._final is not None:
            raise RuntimeError("feed() after finish(): call reset() first")
        audio = self.check_audio(audio_chunk, fs)
        if audio.size:
            self._consume(self.fbank.step(audio), final=False)
        return self._text()

    def finish(self) -> str:
        """Flush the last frames; returns the final text (again if repeated)."""
        if self._final is None:
            self._consume(self.fbank.step(np.zeros(0, np.float32), final=True), final=True)
            if hasattr(self.search, "finalize"):  # the LM's end of sentence
                self.search.finalize()
            self._final = self._text()
        return self._final

    @property
    def blank_id(self) -> int:
        """The CTC blank token's id."""
        return int(self.meta["blank_id"])

    def token_ids(self) -> List[int]:
        """Best token ids so far (no blanks)."""
        return self.search.best()

    def posteriors(self) -> np.ndarray:
        """(T', V) CTC log-posteriors emitted so far (a transducer export: its (T', D) encoder frames)."""
        if not self.log_probs:
            return np.zeros((0, len(self.meta["token_list"])), np.float32)
        return np.concatenate(self.log_probs)
