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
  ``L >= 0``, everything otherwise) in a preallocated buffer
  (:class:`_KVCache`: appending a chunk copies only the chunk), its relative
  positions already projected by ``linear_pos`` (:class:`_RelPosCache`:
  computed once per doubling of the span, not per chunk), the ``P`` last GLU
  outputs of its causal depthwise conv, and its input frames waiting for
  their chunk (a chunk runs once its ``R`` look-ahead frames are there, or at
  the end).

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


class _KVCache:
    """Keys and values of one attention, by absolute frame index, preallocated.

    ``append`` writes the new frames after the live ones; ``drop_before``
    forgets frames (the bounded left context). The live frames move to the
    front of the buffer only when the end is reached, and the buffer doubles
    only when they fill half of it: each frame is copied O(1) times on
    average, and a bounded window keeps a bounded buffer.
    """

    def __init__(self, capacity: int = 64):
        self.k = self.v = None  # (1, H, capacity, d_k)
        self.capacity = capacity
        self.offset = 0  # buffer index of the first live frame
        self.size = 0  # live frames
        self.first = 0  # absolute index of the first live frame

    def append(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """(1, H, n, d_k) keys and values of the next frames."""
        n = k.size(2)

        def empty(like: torch.Tensor, frames: int) -> torch.Tensor:
            return like.new_empty(like.size(0), like.size(1), frames, like.size(3))

        if self.k is None:
            cap = max(self.capacity, 2 * n)
            self.k, self.v = empty(k, cap), empty(v, cap)
        if self.offset + self.size + n > self.k.size(2):
            live_k = self.k[:, :, self.offset : self.offset + self.size]
            live_v = self.v[:, :, self.offset : self.offset + self.size]
            if 2 * (self.size + n) > self.k.size(2):  # more than half full: double
                cap = 2 * (self.size + n)
                self.k, self.v = empty(self.k, cap), empty(self.v, cap)
            else:  # room enough: move the live frames to the front (a copy: the ranges may overlap)
                live_k, live_v = live_k.clone(), live_v.clone()
            self.k[:, :, : self.size] = live_k
            self.v[:, :, : self.size] = live_v
            self.offset = 0
        end = self.offset + self.size
        self.k[:, :, end : end + n] = k
        self.v[:, :, end : end + n] = v
        self.size += n

    def window(self, lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of absolute frames [lo, hi) (views, no copy)."""
        a, b = self.offset + lo - self.first, self.offset + hi - self.first
        return self.k[:, :, a:b], self.v[:, :, a:b]

    def drop_before(self, index: int) -> None:
        """Forget the frames before absolute ``index``."""
        gone = min(max(0, index - self.first), self.size)
        self.offset, self.size, self.first = self.offset + gone, self.size - gone, self.first + gone


class _RelPosCache:
    """``linear_pos`` of the relative positional encodings, per relative position.

    Rows ``r_hi - r`` hold position ``r`` for ``r_lo <= r <= r_hi``, as
    ``(H, P, d_k)``; a request outside the span recomputes it at twice the
    largest position asked (the encodings of a position do not depend on the
    span: ``RelPositionalEncoding`` computes each from its index).
    """

    def __init__(self, attn: RelPositionMultiHeadedAttention, pos_enc: RelPositionalEncoding):
        self.attn, self.pos_enc = attn, pos_enc
        self.p = None
        self.r_lo = self.r_hi = 0
        self.computations = 0  # linear_pos calls so far (tests, benchmarks)
        self._index: dict[int, torch.Tensor] = {}  # shift_index per chunk length

    def rows(self, r_min: int, r_max: int, like: torch.Tensor) -> torch.Tensor:
        """``(H, r_max - r_min + 1, d_k)``: positions r_max down to r_min."""
        if self.p is None or r_min < self.r_lo or r_max > self.r_hi:
            lo = min(r_min, self.r_lo) if self.p is not None else r_min
            hi = max(r_max, 2 * self.r_hi) if self.p is not None else max(r_max, 1)
            self.pos_enc.extend_pe(torch.zeros(1, max(hi, -lo) + 1))
            pe = self.pos_enc.pe  # (1, 2M-1, D), index center - r holds position r
            center = pe.size(1) // 2
            pos = pe[0, center - hi : center - lo + 1].to(like)  # (P, D): hi..lo
            attn = self.attn
            self.p = attn.linear_pos(pos).view(-1, attn.h, attn.d_k).transpose(0, 1)  # (H, P, d_k)
            self.r_lo, self.r_hi = lo, hi
            self.computations += 1
        return self.p[:, self.r_hi - r_max : self.r_hi - r_min + 1]

    def shift_index(self, n: int, nk: int) -> torch.Tensor:
        """``(1, 1, n, nk)``: where query ``i``'s score for key ``j`` is among the rows of
        :meth:`rows` (position ``r_max - (n - 1 - i + j)``): ``n - 1 - i + j``, the same for
        every chunk of ``n`` queries; kept, grown by doubling like the rows."""
        idx = self._index.get(n)
        if idx is None or idx.size(-1) < nk:
            cols = max(nk, 2 * idx.size(-1)) if idx is not None else max(nk, 64)
            idx = (n - 1 - torch.arange(n)[:, None] + torch.arange(cols)[None, :])[None, None]
            self._index[n] = idx
        return idx[..., :nk]


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
        self.kv = _KVCache()  # cached keys / values, by absolute frame index
        self.pos = _RelPosCache(self.attn, pos_enc) if self.rel else None
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
        self.kv.append(k, v)

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
        left = self.kv.first
        if self.cfg.left_chunks >= 0:
            left = max(left, start - self.cfg.left_chunks * self.cfg.chunk_size)
        k, v = self.kv.window(left, key_end)  # (1, H, nk, d_k)
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
            self.kv.drop_before((self.chunk - self.cfg.left_chunks) * self.cfg.chunk_size)
        return x

    def _rel_scores(self, q, k, q_first: int, k_first: int) -> torch.Tensor:
        """Transformer-XL scores of queries at q_first.. vs keys at k_first..

        ``(1, H, n, nk)``; the position term of query ``i`` and key ``j`` uses
        the relative position ``i - j`` (ESPnet's ``rel_shift`` layout).
        """
        attn = self.attn
        n, nk = q.size(2), k.size(2)
        r_max, r_min = q_first + n - 1 - k_first, q_first - (k_first + nk - 1)
        p = self.pos.rows(r_min, r_max, q)  # (H, P, d_k): r_max..r_min
        qt = q.transpose(1, 2)  # (1, n, H, d_k)
        ac = torch.matmul((qt + attn.pos_bias_u).transpose(1, 2), k.transpose(-2, -1))
        bd = torch.matmul((qt + attn.pos_bias_v).transpose(1, 2), p.transpose(-2, -1))
        bd = torch.gather(bd, -1, self.pos.shift_index(n, nk).expand(1, attn.h, n, nk))
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
