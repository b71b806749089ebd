"""Chunk config of the encoder's streaming mode and what it defines: masks, latency.

Pure functions and one typed dataclass; no module state. The encoder
(:mod:`espnet_omni.nets.omni_conformer`) applies them in its streaming mode,
and the chunk-by-chunk inference (:mod:`espnet_omni.nets.incremental_encoder`)
reproduces exactly what they define.

Frames here are encoder frames, i.e. *after* the subsampling front end
(one frame = ``subsampling * hop`` samples, 40 ms for ``conv2d`` on 10 ms
hops). Chunk ``k`` holds frames ``[k*C, (k+1)*C)``.

Visibility (:func:`chunk_attention_mask`): query ``t`` in chunk ``c = t // C``
sees key ``u`` iff

* ``u < (c + 1) * C + R``  -- its own chunk, all earlier frames, and the
  first ``R`` frames of chunk ``c + 1`` (look-ahead), and
* ``u >= (c - L) * C``  when ``L >= 0`` -- at most ``L`` whole chunks of
  left context (``L = -1``: the whole history; ``L = 0``: own chunk only).

Every frame of one chunk sees the same keys, which is what makes a cache of
keys/values per layer exact. Look-ahead *cascades* through depth: a key in
chunk ``c + 1`` was itself computed, one layer down, from keys up to
``(c + 2) * C + R``; so with ``R > 0`` on all ``N`` blocks the encoder output
of a chunk waits for ``(N - 1) * C + R`` further frames (see
:func:`encoder_right_context`). ``lookahead_layers`` limits look-ahead to the
first blocks: ``lookahead_layers=1`` keeps the wait at ``R`` frames.

Depthwise convolution (:func:`causal_conv_kernel_mask`): the same kernel
tensor (size ``K``, odd, symmetric padding ``(K - 1) // 2``) with its future
taps zeroed, so output ``t`` reads inputs ``t - (K - 1) // 2 .. t``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Union

import torch

from espnet_omni.sparsity.yaml_io import check_keys

# Chosen so a 4-block model waits 640 ms per chunk at 40 ms frames, the usual
# operating point of chunked Conformers (WeNet U2 decodes with chunk 16).
DEFAULT_CHUNK_SIZE = 16


@dataclass(frozen=True)
class StreamingConfig:
    """Chunked self-attention settings (all in encoder frames).

    Attributes:
        chunk_size: ``C > 0`` frames per chunk.
        left_chunks: ``L >= -1`` chunks of left context; ``-1`` = unlimited
            (the whole history), ``0`` = own chunk only.
        lookahead: ``R`` frames of the next chunk every query sees,
            ``0 <= R <= C`` (``0`` = none).
        lookahead_layers: blocks (from the first) whose attention uses the
            look-ahead; ``-1`` = all blocks, ``n >= 1`` = the first ``n``.
            Irrelevant when ``lookahead == 0``.
    """

    chunk_size: int = DEFAULT_CHUNK_SIZE
    left_chunks: int = -1
    lookahead: int = 0
    lookahead_layers: int = -1

    def __post_init__(self) -> None:
        for key in ("chunk_size", "left_chunks", "lookahead", "lookahead_layers"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"StreamingConfig.{key} must be an int, got {value!r}")
        if self.chunk_size <= 0:
            raise ValueError(
                f"StreamingConfig.chunk_size={self.chunk_size}: must be > 0 frames"
            )
        if self.left_chunks < -1:
            raise ValueError(
                f"StreamingConfig.left_chunks={self.left_chunks}: must be >= -1 "
                "(-1 = unlimited history, 0 = own chunk only)"
            )
        if not 0 <= self.lookahead <= self.chunk_size:
            raise ValueError(
                f"StreamingConfig.lookahead={self.lookahead}: must be in "
                f"[0, chunk_size={self.chunk_size}]"
            )
        if self.lookahead_layers == 0 or self.lookahead_layers < -1:
            raise ValueError(
                f"StreamingConfig.lookahead_layers={self.lookahead_layers}: must be "
                "-1 (all blocks) or >= 1"
            )

    @classmethod
    def from_dict(cls, conf: Optional[dict]) -> "StreamingConfig":
        """Build from a YAML mapping; unknown keys raise, naming the valid ones."""
        conf = dict(conf or {})
        check_keys(conf, [f.name for f in dataclasses.fields(cls)], "streaming")
        return cls(**conf)

    def to_dict(self) -> dict:
        """Plain mapping (YAML-ready); ``from_dict(to_dict())`` round-trips."""
        return dataclasses.asdict(self)

    def layer_lookahead(self, layer: int) -> int:
        """Look-ahead ``R`` used by block ``layer`` (0-based)."""
        if self.lookahead_layers == -1 or layer < self.lookahead_layers:
            return self.lookahead
        return 0


def chunk_attention_mask(
    size: int, cfg: StreamingConfig, device: Union[str, torch.device, None] = None
) -> torch.Tensor:
    """Chunked self-attention visibility, ``True`` where query ``t`` sees key ``u``.

    See the module docstring for the rule. The diagonal is always ``True``.

    Args:
        size: ``T`` frames.
        cfg: chunk size ``C``, left chunks ``L`` (``-1`` = unlimited) and
            look-ahead ``R``.

    Returns:
        BoolTensor ``(T, T)`` (query, key).

    Chunk 2, unlimited history, no look-ahead:

    >>> m = chunk_attention_mask(5, StreamingConfig(chunk_size=2))
    >>> m.int()
    tensor([[1, 1, 0, 0, 0],
            [1, 1, 0, 0, 0],
            [1, 1, 1, 1, 0],
            [1, 1, 1, 1, 0],
            [1, 1, 1, 1, 1]], dtype=torch.int32)

    One chunk of left context and one frame of look-ahead:

    >>> chunk_attention_mask(6, StreamingConfig(2, left_chunks=1, lookahead=1)).int()
    tensor([[1, 1, 1, 0, 0, 0],
            [1, 1, 1, 0, 0, 0],
            [1, 1, 1, 1, 1, 0],
            [1, 1, 1, 1, 1, 0],
            [0, 0, 1, 1, 1, 1],
            [0, 0, 1, 1, 1, 1]], dtype=torch.int32)

    Own chunk only (``left_chunks=0``):

    >>> chunk_attention_mask(4, StreamingConfig(2, left_chunks=0)).int()
    tensor([[1, 1, 0, 0],
            [1, 1, 0, 0],
            [0, 0, 1, 1],
            [0, 0, 1, 1]], dtype=torch.int32)
    """
    t = torch.arange(size, device=device)
    chunk = t // cfg.chunk_size  # (T,) chunk index of each query
    upper = (chunk + 1) * cfg.chunk_size + cfg.lookahead  # (T,) first unseen key
    visible = t[None, :] < upper[:, None]  # (T, T)
    if cfg.left_chunks >= 0:
        lower = (chunk - cfg.left_chunks) * cfg.chunk_size  # (T,) first seen key
        visible &= t[None, :] >= lower[:, None]
    return visible


def streaming_attention_mask(
    chunk_mask: torch.Tensor, key_mask: torch.Tensor
) -> torch.Tensor:
    """Combine a chunk mask with ESPnet's padding mask.

    Args:
        chunk_mask: ``(T, T)`` bool, from :func:`chunk_attention_mask`.
        key_mask: ``(B, 1, T)`` bool, ``True`` on real frames (ESPnet's
            encoder mask).

    Returns:
        ``(B, T, T)`` bool: ``chunk & key_mask``; its diagonal is the padding
        mask (the convolution module reads it there). A padded query whose
        row would be empty (all its keys padded) sees frame 0 instead, so no
        softmax runs over an empty set (those rows are discarded anyway).

    >>> m = streaming_attention_mask(
    ...     chunk_attention_mask(4, StreamingConfig(2, left_chunks=0)),
    ...     torch.tensor([[[True, True, True, False]], [[True, False, False, False]]]))
    >>> m.int()
    tensor([[[1, 1, 0, 0],
             [1, 1, 0, 0],
             [0, 0, 1, 0],
             [0, 0, 1, 0]],
    <BLANKLINE>
            [[1, 0, 0, 0],
             [1, 0, 0, 0],
             [1, 0, 0, 0],
             [1, 0, 0, 0]]], dtype=torch.int32)
    >>> torch.equal(m.diagonal(dim1=1, dim2=2)[:, 1], torch.tensor([True, False]))
    True
    """
    mask = chunk_mask[None, :, :] & key_mask  # (B, T, T)
    empty = ~mask.any(dim=-1)  # (B, T) padded queries with no visible key
    mask[:, :, 0] |= empty
    return mask


def causal_conv_kernel_mask(kernel_size: int) -> torch.Tensor:
    """Float mask over the taps of an odd, symmetric ("same"-padded) kernel.

    Tap ``j`` of a kernel of size ``K`` with padding ``P = (K - 1) // 2``
    reads input ``t + j - P``; taps ``j > P`` read the future and are zeroed.
    Multiplying the kernel by this mask (shape ``(K,)``, broadcast over
    ``(out, in / groups, K)``) makes the same weights causal with ``P`` frames
    of left context.

    >>> causal_conv_kernel_mask(5)
    tensor([1., 1., 1., 0., 0.])
    >>> causal_conv_kernel_mask(1)
    tensor([1.])
    """
    if kernel_size <= 0 or kernel_size % 2 == 0:
        raise ValueError(
            f"kernel_size={kernel_size}: must be a positive odd number "
            "(a symmetric 'same' kernel)"
        )
    pad = (kernel_size - 1) // 2
    return (torch.arange(kernel_size) <= pad).float()


def encoder_right_context(cfg: StreamingConfig, num_blocks: int) -> int:
    """Encoder frames past a chunk's last frame that its output depends on.

    Block ``l`` computes chunk ``k`` from block ``l - 1`` frames up to
    ``(k + 1) * C + R_l - 1``; those frames may belong to chunk ``k + 1``
    of block ``l - 1``, and so on down (look-ahead cascades).

    >>> encoder_right_context(StreamingConfig(4), 3)
    0
    >>> encoder_right_context(StreamingConfig(4, lookahead=2), 3)  # (3-1)*4 + 2
    10
    >>> encoder_right_context(StreamingConfig(4, lookahead=2, lookahead_layers=1), 3)
    2
    """
    last = cfg.chunk_size - 1  # last frame of chunk 0, at the output
    need = last
    for layer in reversed(range(num_blocks)):  # from the top block down
        chunk = need // cfg.chunk_size
        need = (chunk + 1) * cfg.chunk_size + cfg.layer_lookahead(layer) - 1
    return max(need, last) - last


@dataclass(frozen=True)
class StreamingLatency:
    """Algorithmic latency of one chunk, in milliseconds.

    ``total_ms = chunk_ms + lookahead_ms + frontend_ms``: the time from the
    first audio sample of a chunk to the last sample its output needs.
    """

    chunk_ms: float  # C encoder frames
    lookahead_ms: float  # encoder right context (look-ahead, cascaded)
    frontend_ms: float  # subsampling receptive field + STFT half window

    @property
    def total_ms(self) -> float:
        return self.chunk_ms + self.lookahead_ms + self.frontend_ms


def algorithmic_latency(
    cfg: StreamingConfig,
    num_blocks: int,
    fs: int,
    hop_length: int,
    n_fft: int,
    subsampling: int,
    receptive_field: int,
    center: bool = True,
) -> StreamingLatency:
    """Latency of chunked decoding for a front end and an encoder depth.

    Args:
        subsampling: ``s``, feature frames per encoder frame (4 for conv2d).
        receptive_field: ``rf``, feature frames one encoder frame reads
            (7 for conv2d: two 3x3 convs of stride 2); encoder frame ``i``
            reads feature frames ``s*i .. s*i + rf - 1``, i.e. ``rf - s``
            frames past its own ``s``.
        center: STFT frames centred on ``f * hop`` (ESPnet's default) read
            ``n_fft - n_fft // 2`` samples from ``f * hop`` on; otherwise
            frame ``f`` ends at ``f * hop + n_fft``.

    >>> lat = algorithmic_latency(StreamingConfig(16), 4, 16000, 160, 512, 4, 7)
    >>> (lat.chunk_ms, lat.lookahead_ms, lat.frontend_ms, lat.total_ms)
    (640.0, 0.0, 36.0, 676.0)
    """
    ms = 1000.0 / fs
    chunk = cfg.chunk_size * subsampling * hop_length * ms
    ahead = encoder_right_context(cfg, num_blocks) * subsampling * hop_length * ms
    # The chunk (with its right context) covers feature frames up to
    # s*C' - 1 (C' = C + right context); its last encoder frame reads up to
    # feature frame s*(C' - 1) + rf - 1, i.e. rf - s - 1 frames further, and
    # that frame reads n_fft/2 samples past its centre (n_fft past its start
    # when not centred) while the chunk's audio ends one hop past the centre
    # of feature frame s*C' - 1.
    window = n_fft - n_fft // 2 if center else n_fft
    front = ((receptive_field - subsampling - 1) * hop_length + window) * ms
    return StreamingLatency(chunk, ahead, front)
