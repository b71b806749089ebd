"""Chunk-by-chunk forward of an ``OmniConformerEncoder`` with cached state.

:class:`EncoderStream` takes feature frames as they arrive and returns the
encoder frames that became final; concatenated, they equal the encoder's
simulated streaming forward on the whole utterance (its streaming mode with
the same :class:`~espnet_omni.nets.chunk_config.StreamingConfig`). Batch 1,
inference only (``torch.no_grad``, eval).

State, per stage:

* front end (``conv2d*`` subsampling, stride ``s``, receptive field ``rf``):
  the feature frames not yet consumed; encoder frame ``i`` is computed once
  feature frame ``s*i + rf - 1`` is there (convs on a slice that starts at a
  multiple of ``s`` give exactly the whole-utterance outputs);
* each block: keys/values of its attention (the last ``L`` chunks when
  ``L >= 0``, everything otherwise), the ``P`` last GLU outputs of its
  causal depthwise conv, and its input frames waiting for their chunk
  (a chunk runs once its ``R`` look-ahead frames are there, or at the end).

Supported (anything else raises ``NotImplementedError`` naming the option):
``rel_pos`` with ``rel_pos_type: latest`` (``RelPositionalEncoding`` +
``rel_selfattn``, ``zero_triu: false``) or ``abs_pos`` + ``selfattn``;
``normalize_before: true``, ``concat_after: false``; conv2d subsampling
(``conv2d``, ``conv2d1``, ``conv2d2``, ``conv2d6``, ``conv2d8``).
"""

from __future__ import annotations

import math
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
from espnet_omni.nets.omni_conformer import CONV_SUBSAMPLING, OmniConformerEncoder
from espnet_omni.nets.chunk_config import StreamingConfig


def subsampling_geometry(embed: nn.Module) -> tuple[int, int]:
    """``(stride s, receptive field rf)`` in feature frames of a conv2d front end.

    Composes the time axis of every ``Conv2d`` in ``embed.conv``.
    """
    stride, field = 1, 1
    for m in embed.conv:
        if isinstance(m, nn.Conv2d):
            field += (m.kernel_size[0] - 1) * stride
            stride *= m.stride[0]
    return stride, field


class _FrontEnd:
    """Subsampling front end over a growing buffer of feature frames."""

    def __init__(self, embed: nn.Module):
        self.embed = embed
        self.stride, self.field = subsampling_geometry(embed)
        self.pos_enc = embed.pos_enc
        self.buffer: Optional[torch.Tensor] = None  # (n, D_in) unconsumed frames
        self.emitted = 0  # encoder frames out so far

    def step(self, feats: torch.Tensor) -> torch.Tensor:
        """(n, D_in) new feature frames -> (m, D) new encoder-input frames."""
        buf = _cat(self.buffer, feats, 0)  # (n_buf, D_in)
        self.buffer = buf
        if buf.size(0) < self.field:
            return feats.new_zeros(0, self.embed.out.out_features)
        count = (buf.size(0) - self.field) // self.stride + 1  # encoder frames ready
        used = (count - 1) * self.stride + self.field  # feature frames read
        x = self.embed.conv(buf[None, None, :used])  # (1, c, count, f)
        b, c, t, f = x.size()
        x = self.embed.out(x.transpose(1, 2).reshape(b, t, c * f))[0]  # (count, D)
        x = x * self.pos_enc.xscale
        if type(self.pos_enc) is PositionalEncoding:
            self.pos_enc.extend_pe(torch.zeros(1, self.emitted + count))
            x = x + self.pos_enc.pe[0, self.emitted : self.emitted + count].to(x)
        self.buffer = buf[count * self.stride :]
        self.emitted += count
        return x


def _cat(old: Optional[torch.Tensor], new: torch.Tensor, dim: int) -> torch.Tensor:
    return new if old is None else torch.cat([old, new], dim)


def _heads(attn: MultiHeadedAttention, linear: nn.Module, x: torch.Tensor):
    """(T, D) -> (1, H, T, d_k)."""
    return linear(x).view(1, -1, attn.h, attn.d_k).transpose(1, 2)


class _Block:
    """One conformer block: pending frames, key/value cache, conv cache."""

    def __init__(self, layer: nn.Module, cfg: StreamingConfig, lookahead: int,
                 pos_enc: nn.Module):
        self.layer, self.cfg, self.lookahead, self.pos_enc = layer, cfg, lookahead, pos_enc
        self.attn = layer.self_attn
        self.rel = isinstance(self.attn, RelPositionMultiHeadedAttention)
        self.h = None  # (n, D) residual stream of frames waiting for their chunk
        self.a = None  # (n, D) their normalised attention inputs (queries)
        self.first = 0  # absolute index of self.h[0]
        self.k = self.v = None  # (1, H, n_kv, d_k) cached keys / values
        self.kv_first = 0  # absolute index of self.k[:, :, 0]
        self.chunk = 0  # next chunk to compute
        conv = layer.conv_module
        self.conv_cache = None if conv is None else torch.zeros(
            1, conv.depthwise_conv.in_channels, conv.context)  # (1, C, P)

    def _append(self, x: torch.Tensor) -> None:
        """(n, D) new block inputs: macaron FFN, attention inputs, keys/values."""
        layer = self.layer
        if layer.feed_forward_macaron is not None:
            x = x + layer.ff_scale * layer.feed_forward_macaron(layer.norm_ff_macaron(x))
        a = layer.norm_mha(x)  # (n, D)
        k = self.attn.k_norm(_heads(self.attn, self.attn.linear_k, a))  # (1, H, n, d_k)
        v = _heads(self.attn, self.attn.linear_v, a)
        self.h, self.a = _cat(self.h, x, 0), _cat(self.a, a, 0)
        self.k, self.v = _cat(self.k, k, 2), _cat(self.v, v, 2)

    def step(self, x: torch.Tensor, final: bool) -> torch.Tensor:
        """(n, D) new inputs -> (m, D) outputs of the chunks now complete."""
        if x.size(0):
            self._append(x)
        outs = []
        size = self.cfg.chunk_size
        while self.h is not None and self.h.size(0):
            start, end = self.chunk * size, (self.chunk + 1) * size
            have = self.first + self.h.size(0)  # frames seen so far (exclusive)
            if have < end + self.lookahead and not final:
                break
            outs.append(self._chunk(start, min(end, have), min(end + self.lookahead, have)))
        return torch.cat(outs) if outs else x.new_zeros(0, x.size(1))

    def _chunk(self, start: int, end: int, key_end: int) -> torch.Tensor:
        """Frames [start, end) see keys [left, key_end); returns (end-start, D)."""
        layer, attn = self.layer, self.attn
        n = end - start
        h, a = self.h[:n], self.a[:n]  # (n, D)
        left = self.kv_first
        if self.cfg.left_chunks >= 0:
            left = max(left, start - self.cfg.left_chunks * self.cfg.chunk_size)
        k = self.k[:, :, left - self.kv_first : key_end - self.kv_first]  # (1, H, nk, d_k)
        v = self.v[:, :, left - self.kv_first : key_end - self.kv_first]
        q = attn.q_norm(_heads(attn, attn.linear_q, a))  # (1, H, n, d_k)
        if self.rel:
            scores = self._rel_scores(q, k, start, left)
        else:
            scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(attn.d_k)
        prob = torch.softmax(scores, dim=-1)  # (1, H, n, nk)
        ctx = torch.matmul(prob, v).transpose(1, 2).reshape(n, -1)  # (n, D)
        x = h + attn.linear_out(ctx)
        if layer.conv_module is not None:
            y, self.conv_cache = layer.conv_module.forward_chunk(
                layer.norm_conv(x)[None], self.conv_cache)
            x = x + y[0]
        x = x + layer.ff_scale * layer.feed_forward(layer.norm_ff(x))
        if layer.conv_module is not None:
            x = layer.norm_final(x)
        # drop the chunk from the pending frames and old keys from the cache
        self.h, self.a, self.first = self.h[n:], self.a[n:], end
        self.chunk += 1
        if self.cfg.left_chunks >= 0:
            keep = max(self.kv_first, (self.chunk - self.cfg.left_chunks) * self.cfg.chunk_size)
            self.k = self.k[:, :, keep - self.kv_first :]
            self.v = self.v[:, :, keep - self.kv_first :]
            self.kv_first = keep
        return x

    def _rel_scores(self, q, k, q_first: int, k_first: int) -> torch.Tensor:
        """Transformer-XL scores of queries at q_first.. vs keys at k_first..

        ``(1, H, n, nk)``; the position term of query ``i`` and key ``j`` uses
        the relative position ``i - j`` (ESPnet's ``rel_shift`` layout).
        """
        attn = self.attn
        n, nk = q.size(2), k.size(2)
        q_pos = torch.arange(q_first, q_first + n)
        k_pos = torch.arange(k_first, k_first + nk)
        rel = q_pos[:, None] - k_pos[None, :]  # (n, nk)
        r_max, r_min = int(rel.max()), int(rel.min())
        self.pos_enc.extend_pe(torch.zeros(1, max(r_max, -r_min) + 1))
        pe = self.pos_enc.pe  # (1, 2M-1, D), index center - r holds position r
        center = pe.size(1) // 2
        pos = pe[0, center - r_max : center - r_min + 1].to(q)  # (P, D): r_max..r_min
        p = attn.linear_pos(pos).view(-1, attn.h, attn.d_k).transpose(0, 1)  # (H, P, d_k)
        qt = q.transpose(1, 2)  # (1, n, H, d_k)
        ac = torch.matmul((qt + attn.pos_bias_u).transpose(1, 2), k.transpose(-2, -1))
        bd = torch.matmul((qt + attn.pos_bias_v).transpose(1, 2), p.transpose(-2, -1))
        index = (r_max - rel)[None, None].expand(1, attn.h, n, nk)  # (1, H, n, nk)
        bd = torch.gather(bd, -1, index)
        return (ac + bd) / math.sqrt(attn.d_k)


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
        encoder.dual_mode_convs()  # forward_chunk lives there (no mode change)
        self.encoder = encoder
        self.cfg = encoder.streaming_config if cfg is None else cfg
        self.reset()

    def reset(self) -> None:
        """Forget everything (a new utterance)."""
        enc = self.encoder
        self.front = _FrontEnd(enc.embed)
        self.blocks = [
            _Block(layer, self.cfg, self.cfg.layer_lookahead(i), enc.embed.pos_enc)
            for i, layer in enumerate(enc.encoders)
        ]
        self.chunks_out = 0  # encoder frames returned so far

    @property
    def chunks_done(self) -> int:
        """Chunks the last block has output (each ``chunk_size`` frames but
        the last one)."""
        return self.blocks[-1].chunk if self.blocks else 0

    @torch.no_grad()
    def _run(self, feats: torch.Tensor, final: bool) -> torch.Tensor:
        x = self.front.step(feats)  # (m, D)
        for block in self.blocks:
            x = block.step(x, final)
        if self.encoder.normalize_before:
            x = self.encoder.after_norm(x)
        self.chunks_out += x.size(0)
        return x

    def feed(self, feats: torch.Tensor) -> torch.Tensor:
        """(n, D_in) normalised features -> (m, D) final encoder frames."""
        return self._run(feats, final=False)

    def finish(self) -> torch.Tensor:
        """Flush: the encoder frames of the last (possibly partial) chunks."""
        d_in = self.front.buffer.size(1) if self.front.buffer is not None else 1
        return self._run(torch.zeros(0, d_in), final=True)
