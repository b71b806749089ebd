"""Chunk-by-chunk forward of an ``OmniConformerEncoder`` as feature frames arrive.

:class:`EncoderStream` takes feature frames as they arrive and returns the
encoder frames that became final; concatenated, they equal the encoder's
simulated streaming forward on the whole utterance (its streaming mode with
the same :class:`~espnet_omni.nets.chunk_config.StreamingConfig`). Batch 1,
inference only (``torch.no_grad``, eval).

It buffers what is not yet a call of the streaming step
(:class:`~espnet_omni.nets.chunk_step.ChunkStep`, the one the ONNX export
traces) and holds the step's tensor caches:

* front end (``conv2d*`` subsampling, stride ``s``, receptive field ``rf``):
  the feature frames not yet consumed; encoder frame ``i`` is computed once
  feature frame ``s*i + rf - 1`` is there (convs on a slice that starts at a
  multiple of ``s`` give exactly the whole-utterance outputs);
* the front end's frames until a call's ``C + R`` are there (chunk and
  look-ahead); the step then runs on every complete chunk at once (``k * C + R``
  frames) and the first ``k * C`` are consumed;
* the step's caches: per block the keys and values of its left context
  (fixed shapes with ``left_chunks >= 0``), its causal conv's last GLU
  outputs, a lagging block's pending chunk, and the offset.

Per chunk, a block therefore costs its projections of the chunk's frames and
attention over the keys it sees: constant with a bounded left context
(``left_chunks >= 0``), growing like the attention over the history itself
with an unbounded one (``bench/streaming_cost.py`` measures both).

Supported (anything else raises ``NotImplementedError`` naming the option):
``rel_pos`` with ``rel_pos_type: latest`` (``RelPositionalEncoding`` +
``rel_selfattn``, ``zero_triu: false``) or ``abs_pos`` + ``selfattn``;
``normalize_before: true``, ``concat_after: false``; conv2d subsampling
(``conv2d``, ``conv2d1``, ``conv2d2``, ``conv2d6``, ``conv2d8``).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from espnet2.legacy.nets.pytorch_backend.transformer.attention import (
    MultiHeadedAttention,
    RelPositionMultiHeadedAttention,
)
from espnet2.legacy.nets.pytorch_backend.transformer.embedding import (
    PositionalEncoding,
    RelPositionalEncoding,
)
from espnet_omni.nets.chunk_config import StreamingConfig
from espnet_omni.nets.chunk_step import ChunkStep, subsample, subsampling_geometry
from espnet_omni.nets.omni_conformer import CONV_SUBSAMPLING, OmniConformerEncoder

__all__ = ["EncoderStream", "check_streamable", "subsampling_geometry"]


class _FrontEnd:
    """Subsampling front end over a growing buffer of feature frames."""

    def __init__(self, embed: nn.Module):
        self.embed = embed
        self.stride, self.field = subsampling_geometry(embed)
        self.buffer: Optional[torch.Tensor] = None  # (n, D_in) unconsumed frames

    def step(self, feats: torch.Tensor) -> torch.Tensor:
        """(n, D_in) new feature frames -> (m, D) new front-end frames (:func:`subsample`)."""
        buf = feats if self.buffer is None else torch.cat([self.buffer, feats])  # (n_buf, D_in)
        self.buffer = buf
        if buf.size(0) < self.field:
            return feats.new_zeros(0, self.embed.out.out_features)
        count = (buf.size(0) - self.field) // self.stride + 1  # encoder frames ready
        used = (count - 1) * self.stride + self.field  # feature frames read
        self.buffer = buf[count * self.stride:]
        return subsample(self.embed, buf[None, :used])[0]


def check_streamable(encoder: OmniConformerEncoder) -> None:
    """Raise ``NotImplementedError`` for options :class:`EncoderStream` lacks."""
    if not isinstance(encoder, OmniConformerEncoder):
        raise NotImplementedError(
            f"streaming needs an OmniConformerEncoder (encoder: omni_conformer), "
            f"got {type(encoder).__name__}")
    if not isinstance(encoder.embed, CONV_SUBSAMPLING):
        raise NotImplementedError(
            f"streaming supports the conv2d* input layers, got {type(encoder.embed).__name__}")
    pos = type(encoder.embed.pos_enc)
    for i, layer in enumerate(encoder.encoders):
        attn = type(layer.self_attn)
        ok = (pos is RelPositionalEncoding and attn is RelPositionMultiHeadedAttention
              and not layer.self_attn.zero_triu) or (
            pos is PositionalEncoding and attn is MultiHeadedAttention)
        if not ok:
            raise NotImplementedError(
                f"block {i}: streaming supports rel_pos (rel_pos_type: latest, "
                f"rel_selfattn, zero_triu: false) or abs_pos + selfattn; got "
                f"{pos.__name__} + {attn.__name__}")
        if not layer.normalize_before or layer.concat_after:
            raise NotImplementedError(
                "streaming needs normalize_before: true and concat_after: false")


class EncoderStream:
    """Incremental streaming forward of an encoder (batch 1, no grad).

    Args:
        encoder: an ``OmniConformerEncoder`` in eval mode (its masks and
            active sub-network are used as they are).
        cfg: chunk config; default the encoder's ``streaming_config``.

    ``feed(feats (n, D_in)) -> (m, D)`` returns the encoder frames whose
    chunk is complete; ``finish()`` flushes the rest.
    """

    def __init__(self, encoder: OmniConformerEncoder, cfg: Optional[StreamingConfig] = None):
        check_streamable(encoder)
        self.encoder = encoder
        self.cfg = encoder.streaming_config if cfg is None else cfg
        self.step = ChunkStep(encoder, self.cfg)
        self.reset()

    def reset(self) -> None:
        """Forget everything (a new utterance)."""
        self.front = _FrontEnd(self.encoder.embed)
        self.frames = torch.zeros(0, self.encoder.embed.out.out_features)  # (n, D) front-end frames
        self.caches = self.step.initial_caches()
        self.step.reset()
        self.chunks_out = 0  # encoder frames returned so far

    @property
    def chunks_done(self) -> int:
        """Chunks output so far (each ``chunk_size`` frames but the last one)."""
        return -(-self.chunks_out // self.cfg.chunk_size)

    def _call(self, frames: torch.Tensor) -> torch.Tensor:
        out, self.caches = self.step.forward_chunk(frames[None], self.caches)
        return out[0]

    @torch.no_grad()
    def _run(self, feats: torch.Tensor, final: bool) -> torch.Tensor:
        frames = torch.cat([self.frames, self.front.step(feats)])  # (n, D)
        window, size = self.step.window, self.cfg.chunk_size
        outs = []
        if frames.size(0) >= window:  # every complete chunk in one call
            chunks = (frames.size(0) - window) // size + 1
            outs.append(self._call(frames[: (chunks - 1) * size + window]))
            frames = frames[chunks * size:]
        if final and frames.size(0):  # the last call: flushes the pending chunks
            outs.append(self._call(frames))
            frames = frames[:0]
        self.frames = frames
        x = torch.cat(outs) if outs else frames.new_zeros(0, self.encoder.output_size())
        self.chunks_out += x.size(0)
        return x

    def feed(self, feats: torch.Tensor) -> torch.Tensor:
        """(n, D_in) normalised features -> (m, D) final encoder frames."""
        return self._run(feats, final=False)

    def finish(self) -> torch.Tensor:
        """Flush: the encoder frames of the last (possibly partial) chunks."""
        d_in = self.front.buffer.size(1) if self.front.buffer is not None else 1
        return self._run(torch.zeros(0, d_in), final=True)
