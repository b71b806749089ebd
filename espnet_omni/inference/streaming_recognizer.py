"""True streaming ASR: audio in, partial text out after every encoder chunk.

Usage::

    rec = StreamingRecognizer.from_files("exp/asr/config.yaml",
                                         "exp/asr/valid.loss.best.pth",
                                         StreamingConfig(chunk_size=16))
    for piece in pieces:            # np.ndarray (samples,), 16 kHz mono
        partial = rec.feed(piece)
    text = rec.finish()
    rec.reset()                     # next utterance

Pipeline per ``feed``: incremental fbank (:class:`FbankStream`: ESPnet's
frontend on the buffered waveform, keeping only the frames whose STFT window
is complete), global MVN (per frame), the encoder chunk by chunk
(:class:`~espnet_omni.nets.incremental_encoder.EncoderStream`), CTC greedy or prefix
beam search per chunk. Concatenated, the encoder frames equal the simulated
streaming forward of the whole utterance (:func:`simulated_streaming_encode`).
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import List, Optional, Union

import numpy as np
import torch

from espnet2.asr.frontend.default import DefaultFrontend
from espnet2.layers.global_mvn import GlobalMVN
from espnet2.text.build_tokenizer import build_tokenizer
from espnet2.text.token_id_converter import TokenIDConverter
from espnet_omni.inference.ctc_decoder import make_ctc_search
from espnet_omni.inference.transducer_decoder import make_transducer_search
from espnet_omni.nets.transducer import is_transducer
from espnet_omni.nets.chunk_config import (
    StreamingConfig,
    StreamingLatency,
    algorithmic_latency,
)
from espnet_omni.nets.incremental_encoder import EncoderStream, subsampling_geometry
from espnet_omni.nets.omni_conformer import supernet_encoder


class FbankStream:
    """ESPnet's ``DefaultFrontend`` applied incrementally, frame-exact.

    With ``center=True`` (ESPnet's default) STFT frame ``f`` reads samples
    ``f*hop - n_fft/2 .. f*hop + n_fft/2 - 1`` (reflected at the edges), so
    frame ``f`` is final once sample ``f*hop + n_fft/2 - 1`` has arrived,
    except the last frames, which read the reflected end: those come out of
    :meth:`finish`. Each call runs the frontend on a slice starting
    ``ceil(n_fft/2 / hop)`` hops before the first new frame (so no kept frame
    touches the slice's own left reflection) and keeps the new final frames.
    """

    def __init__(self, frontend: DefaultFrontend):
        if not isinstance(frontend, DefaultFrontend) or frontend.stft is None:
            raise NotImplementedError(
                f"streaming needs ESPnet's default (fbank) frontend, got "
                f"{type(frontend).__name__}")
        self.frontend = frontend
        stft = frontend.stft
        self.hop, self.n_fft, self.center = stft.hop_length, stft.n_fft, stft.center
        self.half = self.n_fft // 2
        self.margin = math.ceil(self.half / self.hop) if self.center else 0  # hops
        self.reset()

    def reset(self) -> None:
        self.wave = np.zeros(0, dtype=np.float32)  # samples from self.offset on
        self.offset = 0  # absolute index of self.wave[0]
        self.total = 0  # samples received
        self.frames = 0  # frames emitted

    def _final_frames(self, final: bool) -> int:
        """Frames (count) computable without the unknown future."""
        # centred frame f reads samples f*hop - half .. f*hop - half + n_fft - 1
        if self.center and final:  # reflect-padded by half on both sides
            if self.total <= self.half:
                return 0
            return (self.total + 2 * self.half - self.n_fft) // self.hop + 1
        ahead = self.n_fft - self.half if self.center else self.n_fft
        return max(0, (self.total - ahead) // self.hop + 1)

    @torch.no_grad()
    def step(self, samples: np.ndarray, final: bool = False) -> torch.Tensor:
        """(n,) new samples -> (m, D) new fbank frames (not normalised)."""
        self.wave = np.concatenate([self.wave, samples.astype(np.float32)])
        self.total += samples.size
        stop = self._final_frames(final)
        if stop <= self.frames:
            return torch.zeros(0, self.frontend.output_size())
        start = max(0, self.frames - self.margin) * self.hop  # absolute sample
        piece = self.wave[start - self.offset :]
        if self.center and piece.size <= self.half:  # reflect pad needs more
            return torch.zeros(0, self.frontend.output_size())
        x = torch.from_numpy(piece)[None]  # (1, n)
        feats, _ = self.frontend(x, torch.tensor([piece.size]))  # (1, F, D)
        first = start // self.hop  # absolute index of feats[0, 0]
        out = feats[0, self.frames - first : stop - first]  # (m, D)
        self.frames = stop
        keep = max(0, self.frames - self.margin) * self.hop
        self.wave, self.offset = self.wave[keep - self.offset :], keep
        return out


def check_audio(audio: np.ndarray, fs: int, model_fs: int) -> np.ndarray:
    """``audio`` as a recognizer's ``feed`` takes it: mono float at ``model_fs``.

    Raises:
        ValueError: another rate, several channels, or integer samples.
    """
    if fs != model_fs:
        raise ValueError(
            f"audio at {fs} Hz but the model expects {model_fs} Hz; resample first")
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(
            f"audio must be mono, shape (samples,); got shape {audio.shape} "
            "(several channels? mix down or pick one)")
    if not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(
            f"audio dtype {audio.dtype}: pass float samples in [-1, 1] "
            "(e.g. int16 / 32768)")
    return audio


def _tokenizer_and_converter(args, token_list):
    """ESPnet's Speech2Text choice for plain token types."""
    if args is None or args.token_type is None:
        return None, TokenIDConverter(token_list=token_list)
    tokenizer = build_tokenizer(token_type=args.token_type, bpemodel=args.bpemodel)
    return tokenizer, TokenIDConverter(token_list=token_list)


class StreamingRecognizer:
    """Chunk-by-chunk recognizer over an ``ESPnetASRModel``: CTC, or RNN-T for a transducer
    model (``model: transducer_torchaudio``; :mod:`~espnet_omni.inference.transducer_decoder`).

    Args:
        model: an ``ESPnetASRModel`` with an ``omni_conformer`` encoder, the
            default frontend and (optionally) global MVN; put in eval mode.
        streaming: chunk config (default: the encoder's ``streaming_config``).
        beam_size: 1 = CTC greedy; > 1 = CTC prefix beam search (a transducer: RNN-T greedy,
            resp. modified beam search, the prediction network's state of every hypothesis
            carried across chunks).
        train_args: the model's training args (token type, bpe model) for
            detokenisation; without them tokens are joined as they are.
        lm: a language model fused into the CTC prefix beam search (a transducer: the modified
            beam search) chunk by chunk
            (:class:`~espnet_omni.inference.lm_scorer.TorchLM`, ``OnnxLM``), or None.
        lm_weight, length_bonus: the fusion's weights (ESPnet's ``lm_weight`` and ``penalty``).
    """

    def __init__(self, model: torch.nn.Module, streaming: Optional[StreamingConfig] = None,
                 beam_size: int = 1, train_args=None, lm=None, lm_weight: float = 0.0,
                 length_bonus: float = 0.0):
        model.eval()
        if model.normalize is not None and not isinstance(model.normalize, GlobalMVN):
            raise NotImplementedError(
                f"normalize: {type(model.normalize).__name__} is not per-frame; "
                "streaming supports global_mvn or none")
        if model.preencoder is not None or model.postencoder is not None:
            raise NotImplementedError("streaming supports no pre/post-encoder")
        self.transducer = is_transducer(model)
        if not self.transducer and getattr(model, "ctc", None) is None:
            raise NotImplementedError("the model has no CTC head (model_conf.ctc_weight: 0): the streaming "
                                      "recognizer decodes CTC")
        self.model = model
        self.fbank = FbankStream(model.frontend)
        self.fs = int(model.frontend.logmel.mel_options["sr"])
        self.train_args = train_args
        self.encoder = EncoderStream(model.encoder, streaming)
        self.cfg = self.encoder.cfg
        if self.transducer:  # greedy RNN-T, or modified beam search (with the LM)
            self.search = make_transducer_search(model.decoder, model.joint_network, model.blank_id, beam_size,
                                                 lm=lm, lm_weight=lm_weight, length_bonus=length_bonus)
        else:
            self.search = make_ctc_search(beam_size, blank=model.blank_id, lm=lm, lm_weight=lm_weight,
                                          length_bonus=length_bonus)
        self.beam_size = beam_size
        self.tokenizer, self.converter = _tokenizer_and_converter(train_args, model.token_list)
        self.reset()

    @classmethod
    def from_files(cls, asr_train_config: Union[str, Path], asr_model_file: Union[str, Path],
                   streaming: Optional[StreamingConfig] = None, beam_size: int = 1,
                   device: str = "cpu", subnet: Optional[Union[str, Path]] = None,
                   lm_train_config: Optional[Union[str, Path]] = None,
                   lm_file: Optional[Union[str, Path]] = None, lm_weight: float = 0.0,
                   length_bonus: float = 0.0) -> "StreamingRecognizer":
        """Build from an ESPnet training config and model file.

        A stock ``encoder: conformer`` checkpoint is loaded into an
        ``omni_conformer`` of the same options (same parameter names; in full
        mode it computes the same function), so any stock Conformer can be
        streamed, e.g. to measure what a full-context model loses when run
        chunk by chunk. ``subnet``: a SubnetConfig YAML activated on a
        supernet encoder (the sparse streaming sub-network, masks applied).
        ``lm_train_config`` / ``lm_file``: ESPnet's LM task files (run.sh stage 6), fused with
        ``lm_weight`` (its token list must be the model's).
        """
        from espnet_omni.tasks import OmniASRTask, as_omni_config

        config = as_omni_config(asr_train_config)
        model, args = OmniASRTask.build_model_from_file(config, asr_model_file, device)
        if subnet is not None:
            from espnet_omni.sparsity.subnet import SubnetConfig

            encoder = supernet_encoder(model, f"--subnet {subnet} ({asr_train_config})")
            encoder.set_active_subnet(SubnetConfig.from_yaml(subnet))
        lm = None
        if (lm_train_config is None) != (lm_file is None):
            raise ValueError("give both lm_train_config and lm_file (--lm_train_config, --lm_file), or neither")
        if lm_train_config is not None:
            from espnet_omni.tasks.lm_check import check_lm_token_list
            from espnet_omni.inference.lm_scorer import TorchLM

            check_lm_token_list(asr_train_config, lm_train_config)
            lm = TorchLM.from_files(lm_train_config, lm_file, device)
        return cls(model, streaming, beam_size, args, lm=lm, lm_weight=lm_weight, length_bonus=length_bonus)

    # ------------------------------------------------------------------ state
    def set_streaming_config(self, cfg: StreamingConfig) -> None:
        """Use another chunk config (same weights); resets the utterance."""
        self.encoder = EncoderStream(self.model.encoder, cfg)
        self.cfg = cfg
        self.reset()

    def spawn(self) -> "StreamingRecognizer":
        """A recognizer of its own stream over the same model, LM and options: the weights are
        shared (read only), the front-end buffer, encoder caches and search are its own, so two
        streams can be fed from two threads (a server: one per connection)."""
        new = copy.copy(self)
        new.fbank = FbankStream(self.model.frontend)
        new.encoder = EncoderStream(self.model.encoder, self.cfg)
        new.search = copy.copy(self.search)  # every search's reset() builds its state anew
        new.reset()
        return new

    def reset(self) -> None:
        """Start a new utterance."""
        self.fbank.reset()
        self.encoder.reset()
        self.search.reset()
        self.encoder_frames: List[torch.Tensor] = []  # (m, D) per call
        self.log_probs: List[np.ndarray] = []  # (m, V) CTC log-posteriors per call
        self.chunk_ms: List[float] = []  # compute time per encoder chunk
        self._pending_ms = 0.0  # compute of calls that completed no chunk yet
        self._final: Optional[str] = None

    def latency(self) -> StreamingLatency:
        """Algorithmic latency of this model and config."""
        stft = self.model.frontend.stft
        stride, field = subsampling_geometry(self.model.encoder.embed)
        return algorithmic_latency(
            self.cfg, len(self.model.encoder.encoders), self.fs, stft.hop_length,
            stft.n_fft, stride, field, stft.center)

    def chunk_samples(self) -> int:
        """Samples of audio per encoder chunk (a natural ``feed`` size)."""
        stride, _ = subsampling_geometry(self.model.encoder.embed)
        return self.cfg.chunk_size * stride * self.model.frontend.stft.hop_length

    # ------------------------------------------------------------ processing
    def check_audio(self, audio: np.ndarray, fs: int) -> np.ndarray:
        """``audio`` as an array ``feed`` takes.

        Raises:
            ValueError: ``fs`` is not the model's rate, ``audio`` is not mono
                (shape ``(samples,)``), or its samples are not float.
        """
        return check_audio(audio, fs, self.fs)

    def _text(self) -> str:
        ids = self.search.best()
        tokens = self.converter.ids2tokens(ids)
        if self.tokenizer is None:
            return " ".join(tokens)
        return self.tokenizer.tokens2text(tokens)

    def feed(self, audio_chunk: np.ndarray, fs: int = 16000) -> str:
        """Add ``(samples,)`` float audio; returns the partial text so far.

        Any size works (an empty chunk too); each completed encoder chunk is
        decoded at once.
        """
        if self._final is not None:
            raise RuntimeError("feed() after finish(): call reset() first")
        audio = self.check_audio(audio_chunk, fs)
        if audio.size:
            self._feed_feats(audio)
        return self._text()

    def _feed_feats(self, audio: np.ndarray) -> None:
        tic = time.perf_counter()
        chunks_before = self.encoder.chunks_done
        feats = self.fbank.step(audio)
        self._consume(feats, final=False, tic=tic, chunks_before=chunks_before)

    def finish(self) -> str:
        """Flush the last frames; returns the final text (again if repeated)."""
        if self._final is None:
            tic = time.perf_counter()
            chunks_before = self.encoder.chunks_done
            feats = self.fbank.step(np.zeros(0, np.float32), final=True)
            self._consume(feats, final=True, tic=tic, chunks_before=chunks_before)
            if hasattr(self.search, "finalize"):  # the LM's end of sentence
                self.search.finalize()
            self._final = self._text()
        return self._final

    @torch.no_grad()
    def _consume(self, feats: torch.Tensor, final: bool, tic: float, chunks_before: int) -> None:
        """Normalise fbank frames, run the encoder and the CTC search."""
        if feats.size(0) and self.model.normalize is not None:
            feats, _ = self.model.normalize(feats[None], torch.tensor([feats.size(0)]))
            feats = feats[0]  # (m, D_feat)
        enc = self.encoder.feed(feats)
        if final:
            enc = torch.cat([enc, self.encoder.finish()])
        if enc.size(0):
            self.encoder_frames.append(enc)  # (m, D)
            if self.transducer:  # the prediction network's state goes on across chunks
                self.search.step(enc)
            else:
                logp = self.model.ctc.log_softmax(enc[None])[0].numpy()  # (m, V)
                self.log_probs.append(logp)
                self.search.step(logp)
        self._pending_ms += (time.perf_counter() - tic) * 1000.0
        done = self.encoder.chunks_done - chunks_before
        if done:
            self.chunk_ms += [self._pending_ms / done] * done
            self._pending_ms = 0.0

    # ---------------------------------------------------------------- results
    def encoder_output(self) -> torch.Tensor:
        """(T', D) encoder frames emitted so far."""
        if not self.encoder_frames:
            return torch.zeros(0, self.model.encoder.output_size())
        return torch.cat(self.encoder_frames)

    @property
    def blank_id(self) -> int:
        """The CTC blank token's id."""
        return self.model.blank_id

    def token_ids(self) -> List[int]:
        """Best token ids so far (no blanks)."""
        return self.search.best()

    def posteriors(self) -> np.ndarray:
        """(T', V) CTC log-posteriors emitted so far (a transducer model: none, (0, V))."""
        if not self.log_probs:
            return np.zeros((0, len(self.model.token_list)), np.float32)
        return np.concatenate(self.log_probs)


@torch.no_grad()
def simulated_streaming_encode(model: torch.nn.Module, speech: np.ndarray,
                               cfg: StreamingConfig) -> torch.Tensor:
    """(T', D) encoder output of the whole utterance in streaming mode (the
    masked forward); the encoder's mode is restored afterwards."""
    enc = model.encoder
    before = enc.get_active_mode()
    enc.set_active_mode("streaming", cfg)
    try:
        x = torch.from_numpy(np.asarray(speech, dtype=np.float32))[None]  # (1, n)
        out, _ = model.encode(x, torch.tensor([x.size(1)]))  # (1, T', D)
    finally:
        enc.set_active_mode(before.name, before.streaming)
    return out[0]

