"""The Conformer encoder's streaming step: one chunk per call, its state as tensors.

:class:`ChunkStep` (an encoder and a :class:`~espnet_omni.nets.chunk_config.StreamingConfig`)
computes the encoder's streaming mode chunk by chunk, like WeNet's ``forward_chunk`` and
icefall's ``streaming_forward``: ``forward_chunk(frames, caches) -> (out, new_caches)``, the
caches a flat list of tensors (:meth:`ChunkStep.initial_caches`). Chunk after chunk, the
outputs concatenated equal the simulated streaming forward of the whole utterance
(:meth:`~espnet_omni.nets.omni_conformer.OmniConformerEncoder.forward` in streaming mode:
chunk masks, causal convolutions). It is the one implementation of the step:
:class:`~espnet_omni.nets.incremental_encoder.EncoderStream` (PyTorch) calls it, and
:class:`~espnet_omni.export.onnx_export.StreamingChunkGraph` traces it for ONNX.

A call reads ``frames (1, n, D)``, the subsampling front end's output (:func:`subsample`,
before the positional scaling) for encoder frames ``[s, s + n)`` (``s``: the ``offset``
cache): ``n = C + R`` (chunk size, look-ahead) in every call but the last, fewer in the last
one (``n < C + R`` says it is the last: it flushes every pending chunk); the next call starts
at ``s + C`` (eager calls may also take ``k`` chunks at once, ``n = k * C + R``). Caches,
per block ``i`` (:class:`BlockStep`, see :meth:`BlockStep.shapes`):

* ``k_cache_i``, ``v_cache_i`` ``(1, H_i, K_i, d_k)``: the keys and values of the frames the
  block's next chunk attends to before its own: ``L * C`` frames with ``left_chunks L >= 0`` (a
  fixed shape; frames before the utterance are masked), every frame so far with
  ``left_chunks -1`` (growing by ``C`` per call); plus those of its pending chunk;
* ``conv_cache_i`` ``(1, C_i, P)``: the last ``P`` GLU outputs of its causal depthwise conv;
* ``pending_i`` ``(1, C, D)``, only in a lagging block: its input of the chunk that waits;

then ``offset`` ``(1,)`` int64, ``s``.

Look-ahead (``R`` frames of the next chunk, per block ``cfg.layer_lookahead(i)``). Block 0
reads its look-ahead keys from the last ``R`` input frames (read again by the next call).
A later block with look-ahead needs the next chunk of the block below, which that block
computes one call later: it *lags* one chunk, outputting chunk ``k - 1`` in the call of
chunk ``k``, and keeps chunk ``k``'s input pending. With ``lag`` lagging blocks the encoder
therefore outputs nothing in the first ``lag`` calls (the chunks before the utterance are
computed from zeros and dropped: masked as keys, zero GLU outputs for the conv; eager calls
skip computing them) and the last call
outputs up to ``lag + 2`` chunks. Every chunk is computed once and comes out once its right
context (:func:`~espnet_omni.nets.chunk_config.encoder_right_context`) is in.

Eager calls take fast paths where a mask or an index is trivial (Python ints); under
``torch.jit`` tracing every such quantity is a tensor expression of the input shapes and
the ``offset`` cache, so one traced graph runs every call, the last one included.
Supported: ``rel_pos`` + ``rel_selfattn`` (``rel_pos_type: latest``, ``zero_triu: false``)
or ``abs_pos`` + ``selfattn``, ``normalize_before: true``, the conv2d* front ends.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Union

import torch
from torch import nn

from espnet2.legacy.nets.pytorch_backend.transformer.attention import RelPositionMultiHeadedAttention
from espnet2.legacy.nets.pytorch_backend.transformer.embedding import PositionalEncoding
from espnet_omni.nets.chunk_config import StreamingConfig

# a frame index: a Python int in eager calls, a (1,) int64 tensor under tracing
Position = Union[int, torch.Tensor]


def subsampling_geometry(embed: nn.Module) -> tuple[int, int]:
    """``(stride s, receptive field rf)`` in feature frames of a conv2d front end.

    Composes the time axis of every ``Conv2d`` in ``embed.conv``; encoder frame ``i``
    reads feature frames ``s*i .. s*i + rf - 1``.
    """
    stride, field = 1, 1
    for m in embed.conv:
        if isinstance(m, nn.Conv2d):
            field += (m.kernel_size[0] - 1) * stride
            stride *= m.stride[0]
    return stride, field


def subsample(embed: nn.Module, feats: torch.Tensor) -> torch.Tensor:
    """``(1, W, D_in)`` feature frames -> ``(1, n, D)``, ``n = (W - rf) // s + 1``: the conv2d
    front end without its positional encoding (on a slice that starts at a multiple of ``s``
    these are exactly the whole utterance's frames)."""
    x = embed.conv(feats.unsqueeze(1))  # (1, c, n, f)
    b, c, t, f = x.size()
    return embed.out(x.transpose(1, 2).reshape(b, t, c * f))


def _tracing() -> bool:
    return torch.jit.is_tracing()


def _weight(layer: nn.Module) -> torch.Tensor:
    """A layer's weight as it computes (masked for a supernet layer)."""
    return layer.masked_weight() if hasattr(layer, "masked_weight") else layer.weight


def _heads(attn: nn.Module, linear: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(1, T, D) -> (1, H, T, d_k)."""
    return linear(x).view(1, -1, attn.h, attn.d_k).transpose(1, 2)


class _RelPositions:
    """``linear_pos`` of the relative positional encodings of one block, as rows
    ``(H, count, d_k)`` for the relative positions ``r_max, r_max - 1, ...``.

    Eager: projected once and kept, recomputed at twice the largest position asked when a
    request leaves the span (an encoding does not depend on the span: ``RelPositionalEncoding``
    computes each from its index). Traced: the call's rows of
    :meth:`ChunkStep.position_table` projected.
    """

    def __init__(self, attn: RelPositionMultiHeadedAttention, step: "ChunkStep"):
        self.attn, self.step = attn, step
        self.clear()

    def clear(self) -> None:
        self.p: Optional[torch.Tensor] = None  # (H, hi - lo + 1, d_k): positions hi .. lo
        self.lo = self.hi = 0
        self.computations = 0  # linear_pos calls so far (tests)
        self._index: dict[int, torch.Tensor] = {}  # shift index per query count

    def _project(self, pos: torch.Tensor) -> torch.Tensor:
        return self.attn.linear_pos(pos).view(-1, self.attn.h, self.attn.d_k).transpose(0, 1)

    def rows(self, r_max: Position, count: Position, like: torch.Tensor) -> torch.Tensor:
        if _tracing():  # the rows of the call from the table (row reach - r holds position r)
            first = self.step.reach - r_max
            return self._project(self.step.position_table()[first: first + count].to(like))
        r_min = r_max - count + 1
        if self.p is None or r_min < self.lo or r_max > self.hi:
            lo = min(r_min, self.lo) if self.p is not None else r_min
            hi = max(r_max, 2 * self.hi) if self.p is not None else max(r_max, 1)
            pos_enc = self.step.encoder.embed.pos_enc
            pos_enc.extend_pe(torch.zeros(1, max(hi, -lo) + 1))
            center = pos_enc.pe.size(1) // 2  # index center - r holds position r
            self.p = self._project(pos_enc.pe[0, center - hi: center - lo + 1].to(like))
            self.lo, self.hi = lo, hi
            self.computations += 1
        return self.p[:, self.hi - r_max: self.hi - r_min + 1]

    def shift_index(self, nq: Position, nk: Position) -> torch.Tensor:
        """``(1, 1, nq, nk)``: where query ``i``'s score for key ``j`` is among :meth:`rows`:
        ``nq - 1 - i + j`` (kept per ``nq`` in eager calls, grown by doubling)."""
        if _tracing():
            return (nq - 1 - torch.arange(nq)[:, None] + torch.arange(nk)[None, :])[None, None]
        idx = self._index.get(nq)
        if idx is None or idx.size(-1) < nk:
            cols = max(nk, 2 * idx.size(-1)) if idx is not None else max(nk, 64)
            idx = (nq - 1 - torch.arange(nq)[:, None] + torch.arange(cols)[None, :])[None, None]
            self._index[nq] = idx
        return idx[..., :nk]


class BlockStep:
    """One Conformer block's streaming step (see the module docstring).

    Args:
        layer: the block (ESPnet's ``EncoderLayer``).
        step: the encoder's :class:`ChunkStep`.
        index: the block's index.
    """

    def __init__(self, layer: nn.Module, step: "ChunkStep", index: int):
        cfg = step.cfg
        self.layer, self.attn, self.cfg = layer, layer.self_attn, cfg
        self.lookahead = cfg.layer_lookahead(index)
        # a later block with look-ahead waits for the next chunk of the block below
        self.pending = cfg.chunk_size if index > 0 and self.lookahead else 0
        # block 0's look-ahead frames are read again by the next call
        self.drop = self.lookahead if index == 0 else 0
        self.lag = sum(1 for i in range(1, index + 1) if cfg.layer_lookahead(i))
        self.keep = cfg.left_chunks * cfg.chunk_size + self.pending if step.bounded else -1
        rel = isinstance(self.attn, RelPositionMultiHeadedAttention)
        self.pos = _RelPositions(self.attn, step) if rel else None
        self.conv = layer.conv_module

    def shapes(self) -> dict[str, Any]:
        """What :func:`initial_caches` needs: heads, d_k, the initial key frames
        ``cache_frames``, the conv channels and context, ``pending`` frames of width ``dim``."""
        conv = self.conv
        return {"heads": self.attn.h, "d_k": self.attn.d_k,
                "cache_frames": self.keep if self.keep >= 0 else self.pending,
                "conv_channels": 0 if conv is None else conv.depthwise_conv.in_channels,
                "conv_context": 0 if conv is None else (conv.depthwise_conv.kernel_size[0] - 1) // 2,
                "pending": self.pending, "dim": self.layer.size}

    @property
    def num_caches(self) -> int:
        return 4 if self.pending else 3

    def forward_chunk(self, x: torch.Tensor, caches: list[torch.Tensor], start: Position,
                      full: Position) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """New input frames -> the outputs of the chunk(s) now complete.

        Args:
            x: ``(1, n, D)`` input frames at positions ``start + pending ..``.
            caches: ``[k_cache, v_cache, conv_cache(, pending)]`` (:meth:`shapes`).
            start: position of the first query (the pending chunk's, else ``x``'s first).
            full: 1 in a call of ``k`` chunks (``k * C + R`` encoder frames), 0 in the last.

        Returns:
            ``(1, nq, D)`` outputs at positions ``start ..`` (``nq = k * C`` but in the last
            call) and the new caches (same shapes; ``left_chunks -1``: ``k * C`` more keys).
        """
        layer, attn = self.layer, self.attn
        k_cache, v_cache, conv_cache = caches[:3]
        n, cached = x.size(1), k_cache.size(2)
        if layer.feed_forward_macaron is not None:
            x = x + layer.ff_scale * layer.feed_forward_macaron(layer.norm_ff_macaron(x))
        a = layer.norm_mha(x)  # (1, n, D) attention inputs
        keys = torch.cat([k_cache, attn.k_norm(_heads(attn, attn.linear_k, a))], 2)  # (1, H, nk, d_k)
        values = torch.cat([v_cache, _heads(attn, attn.linear_v, a)], 2)
        if self.pending:
            x = torch.cat([caches[3], x], 1)  # (1, C + n, D)
            a = torch.cat([layer.norm_mha(caches[3]), a], 1)
        nq = self.pending + n - (self.pending + self.drop) * full  # queries
        if not _tracing() and start + nq <= 0:  # a lagging block's chunks before frame 0: dropped
            y = x.new_zeros(1, nq, x.size(2))
        else:
            y, conv_cache = self._outputs(x[:, :nq], a[:, :nq], keys, values, conv_cache, start,
                                          cached - self.pending)
        end = keys.size(2) - self.drop * full  # block 0's look-ahead keys: again next call
        if self.keep >= 0:
            keys, values = keys[:, :, end - self.keep: end], values[:, :, end - self.keep: end]
        else:
            keys, values = keys[:, :, :end], values[:, :, :end]
        new = [keys, values, conv_cache]
        if self.pending:
            new.append(x[:, -self.pending:])
        return y, new

    def _outputs(self, x: torch.Tensor, a: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                 conv_cache: torch.Tensor, start: Position,
                 shift: Position) -> tuple[torch.Tensor, torch.Tensor]:
        """The block's outputs ``(1, nq, D)`` at ``start ..`` from the queries' residual stream
        ``x`` and attention inputs ``a`` ``(1, nq, D)``, the keys and values
        ``(1, H, nk, d_k)`` (the first ``shift`` frames before the queries) and the conv
        cache; returns them and the new conv cache."""
        layer, attn = self.layer, self.attn
        q = attn.q_norm(_heads(attn, attn.linear_q, a))  # (1, H, nq, d_k)
        lo, hi, visible = self._visible(start, q.size(2), start - shift, keys.size(2))
        k, v = keys[:, :, lo:hi], values[:, :, lo:hi]
        if self.pos is not None:
            scores = self._rel_scores(q, k, shift - lo)
        else:
            scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(attn.d_k)
        if visible is not None:
            scores = scores.masked_fill(~visible, torch.finfo(scores.dtype).min)
        prob = torch.softmax(scores, dim=-1)  # (1, H, nq, hi - lo)
        ctx = torch.matmul(prob, v).transpose(1, 2).reshape(1, -1, attn.h * attn.d_k)
        y = x + attn.linear_out(ctx)
        if self.conv is not None:
            conv_out, conv_cache = self._conv(layer.norm_conv(y), conv_cache, start)
            y = y + conv_out
        y = y + layer.ff_scale * layer.feed_forward(layer.norm_ff(y))
        if self.conv is not None:
            y = layer.norm_final(y)
        return y, conv_cache

    def _visible(self, q_first: Position, nq: Position, k_first: Position,
                 nk: Position) -> tuple[Position, Position, Optional[torch.Tensor]]:
        """Which keys the queries see: ``(lo, hi, mask)``, keys ``lo .. hi - 1`` and a
        ``(nq, hi - lo)`` bool mask over them (the chunk rule of
        :func:`~espnet_omni.nets.chunk_config.chunk_attention_mask` on absolute positions, and
        no frame before 0). Eager calls leave out the keys no query sees and return no mask
        where every query sees every key left; traced calls keep all (``lo = 0``)."""
        size, left, ahead = self.cfg.chunk_size, self.cfg.left_chunks, self.lookahead
        lo = 0
        if not _tracing():
            first, last = q_first // size, (q_first + nq - 1) // size
            lowest = max(0, (first - left) * size) if left >= 0 else 0  # the first query's first key
            lo = min(max(0, lowest - k_first), nk)
            nk = min(nk, (last + 1) * size + ahead - k_first)
            k_first += lo
            if (k_first + nk - lo <= (first + 1) * size + ahead
                    and (left < 0 or k_first >= (last - left) * size)):
                return lo, nk, None
        t = q_first + torch.arange(nq)  # (nq,) query positions
        u = (k_first + torch.arange(nk - lo))[None, :]  # (1, hi - lo) key positions
        chunk = torch.div(t, size, rounding_mode="floor")[:, None]
        visible = (u >= 0) & (u < (chunk + 1) * size + ahead)
        if left >= 0:
            visible = visible & (u >= (chunk - left) * size)
        return lo, nk, visible

    def _rel_scores(self, q: torch.Tensor, k: torch.Tensor, shift: Position) -> torch.Tensor:
        """Transformer-XL scores ``(1, H, nq, nk)``: query ``i`` and key ``j`` are
        ``shift + i - j`` frames apart (ESPnet's ``rel_shift`` layout)."""
        attn = self.attn
        nq, nk = q.size(2), k.size(2)
        p = self.pos.rows(shift + nq - 1, nq + nk - 1, q)  # (H, nq + nk - 1, d_k)
        qt = q.transpose(1, 2)  # (1, nq, H, d_k)
        ac = torch.matmul((qt + attn.pos_bias_u).transpose(1, 2), k.transpose(-2, -1))
        bd = torch.matmul((qt + attn.pos_bias_v).transpose(1, 2), p.transpose(-2, -1))
        bd = torch.gather(bd, -1, self.pos.shift_index(nq, nk).expand(1, attn.h, nq, nk))
        return (ac + bd) / math.sqrt(attn.d_k)

    def _conv(self, x: torch.Tensor, cache: torch.Tensor,
              start: Position) -> tuple[torch.Tensor, torch.Tensor]:
        """The causal conv module on ``(1, nq, D)`` frames at ``start ..`` after ``cache``
        ``(1, C_i, P)``; GLU outputs before frame 0 (a lagging block's first chunks) are
        zeros, like the zero padding of the whole-utterance conv."""
        conv, dw = self.conv, self.conv.depthwise_conv
        context = (dw.kernel_size[0] - 1) // 2
        glu = nn.functional.glu(conv.pointwise_conv1(x.transpose(1, 2)), dim=1)  # (1, C_i, nq)
        if self.lag and (_tracing() or start < 0):
            glu = glu * (start + torch.arange(glu.size(2)) >= 0).to(glu)
        frames = torch.cat([cache, glu], dim=2)  # (1, C_i, P + nq)
        w = _weight(dw)[..., : context + 1]  # past and present taps: the causal kernel
        y = nn.functional.conv1d(frames, w, dw.bias, 1, 0, dw.dilation, dw.groups)
        y = conv.pointwise_conv2(conv.activation(conv.norm(y)))
        return y.transpose(1, 2), frames[:, :, frames.size(2) - context:]


class ChunkStep(nn.Module):
    """The encoder's streaming step (see the module docstring).

    Args:
        encoder: an ``OmniConformerEncoder`` (its active sub-network as it is), or a stock
            or pruned ``ConformerEncoder``; eval mode.
        cfg: the chunk config.
    """

    def __init__(self, encoder: nn.Module, cfg: StreamingConfig):
        super().__init__()
        self.encoder, self.cfg = encoder, cfg
        self.bounded = cfg.left_chunks >= 0
        self.blocks = [BlockStep(layer, self, i) for i, layer in enumerate(encoder.encoders)]
        self.lag = self.blocks[-1].lag if self.blocks else 0
        self.lookahead = cfg.layer_lookahead(0)
        c = cfg.chunk_size
        # relative positions a traced call reaches (the last call's queries included)
        self.reach = (cfg.left_chunks * c + (self.lag + 2) * c + self.lookahead if self.bounded
                      else int(getattr(encoder.embed.pos_enc, "max_len", 5000)))
        self._table: Optional[torch.Tensor] = None

    @property
    def window(self) -> int:
        """Encoder frames of a call's input but the last: ``C + R``."""
        return self.cfg.chunk_size + self.lookahead

    def max_frames(self) -> Optional[int]:
        """Frames of an utterance a traced call can position (``left_chunks -1``: the last
        query of block ``i`` is ``lag_i * C`` frames past its first key, at most ``reach``;
        None: unlimited)."""
        return None if self.bounded else self.reach - self.lag * self.cfg.chunk_size

    def position_table(self) -> torch.Tensor:
        """``(2 * reach + 1, D)`` relative positional encodings, positions ``reach`` down to
        ``-reach`` (the traced calls read it)."""
        if self._table is None:
            pos_enc = self.encoder.embed.pos_enc
            pos_enc.extend_pe(torch.zeros(1, self.reach + 1))
            center = pos_enc.pe.size(1) // 2
            self._table = pos_enc.pe[0, center - self.reach: center + self.reach + 1].detach().clone()
        return self._table

    def reset(self) -> None:
        """Forget the projected positions (the weights may have changed)."""
        for block in self.blocks:
            if block.pos is not None:
                block.pos.clear()

    def cache_shapes(self) -> list[dict[str, Any]]:
        """Per block: :meth:`BlockStep.shapes` (``onnx.json`` keeps them)."""
        return [block.shapes() for block in self.blocks]

    def initial_caches(self) -> list[torch.Tensor]:
        """The caches before the first chunk."""
        return initial_caches(self.cache_shapes())

    def forward_chunk(self, frames: torch.Tensor,
                      caches: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(1, n, D)`` front-end frames (:func:`subsample`) and the caches -> ``(1, m, D)``
        encoder frames now final and the new caches.

        ``n = k * C + R`` computes ``k`` chunks (the traced graph: ``k = 1``; eager calls may
        batch several), ``m = k * C`` once the lagging blocks have filled; ``n < C + R`` is the
        last call, which outputs the rest."""
        enc, size = self.encoder, self.cfg.chunk_size
        offset, n = caches[-1], frames.size(1)
        if _tracing():  # the host's calls: n <= C + R
            start, full = offset, n // self.window
        else:
            start, full = int(offset), int(n >= self.window)
            if full and (n - self.lookahead) % size:
                raise ValueError(f"{n} frames: a call takes k * chunk_size + lookahead frames "
                                 f"(chunk {size}, look-ahead {self.lookahead}), fewer in the last call")
        pos_enc = enc.embed.pos_enc
        x = frames * pos_enc.xscale
        if type(pos_enc) is PositionalEncoding:  # absolute positions (eager only: no export)
            pos_enc.extend_pe(torch.zeros(1, start + frames.size(1)))
            x = x + pos_enc.pe[:, start: start + frames.size(1)].to(x)
        new, i = [], 0
        for block in self.blocks:
            x, block_caches = block.forward_chunk(x, caches[i: i + block.num_caches],
                                                  start - block.lag * size, full)
            new += block_caches
            i += block.num_caches
        x = enc.after_norm(x)
        first = start - self.lag * size  # position of x's first frame
        if self.lag and _tracing():
            x = x[:, first + torch.arange(x.size(1)) >= 0]
        elif self.lag and first < 0:
            x = x[:, -first:]
        return x, new + [offset + (n - self.lookahead * full)]


def initial_caches(blocks: list[dict[str, Any]]) -> list[torch.Tensor]:
    """The caches of :meth:`ChunkStep.forward_chunk` before the first chunk, from the block
    shapes (:meth:`ChunkStep.cache_shapes`, or ``onnx.json``'s ``streaming.blocks``): per block
    zero keys and values of ``cache_frames`` frames, a zero convolution cache and ``pending``
    zero frames (when it lags), then the offset 0."""
    caches = []
    for s in blocks:
        frames = s.get("cache_frames", 0)
        caches += [torch.zeros(1, s["heads"], frames, s["d_k"]),
                   torch.zeros(1, s["heads"], frames, s["d_k"]),
                   torch.zeros(1, s["conv_channels"], s["conv_context"])]
        if s.get("pending", 0):
            caches.append(torch.zeros(1, s["pending"], s["dim"]))
    return caches + [torch.zeros(1, dtype=torch.long)]
