"""The exported sub-network: a stock Conformer with smaller layers, packed weights.

:class:`PrunedConformerEncoder` is ESPnet's ``ConformerEncoder`` (same
forward, same parameter names, no masks) with two additions that an exported
sub-network needs and a stock encoder lacks:

* per-layer sizes (``row`` exports): the hidden units of each block's
  feed-forward (``ffn_units``) and macaron feed-forward
  (``macaron_ffn_units``), the live channels of each conv module
  (``conv_channels``, see :mod:`~espnet_omni.nets.pruned_conv_module`), and
  the output channels of each convolution of the subsampling front end
  (``subsampling_channels``); ``None`` keeps the stock size;
* packed weights (``sparse`` and ``row`` exports): while
  ``load_state_dict`` runs, the packed entries under this encoder's prefix
  are expanded into dense tensors (:func:`~espnet_omni.nets.packed_state.
  unpack_state_dict`), so ESPnet's ``build_model_from_file`` loads a packed
  ``model.pth`` unchanged.

A ``row`` export keeps attention and norms at stock shapes (see
``espnet_omni/export/row.py`` for why); a ``structured`` export of a ``group``
supernet also drops whole attention heads (``attention_heads_per_block``) and
its removed conv-module channels contribute nothing (``conv_dead_channels:
false``), see ``espnet_omni/export/structured.py``.

>>> enc = PrunedConformerEncoder(20, output_size=8, attention_heads=2,
...     linear_units=16, num_blocks=2, ffn_units=[5, 0],
...     subsampling_channels=[8, 3])
>>> [tuple(b.feed_forward.w_1.weight.shape) for b in enc.encoders]
[(5, 8), (0, 8)]
>>> tuple(enc.embed.conv[2].weight.shape), tuple(enc.embed.out.weight.shape)
((3, 8, 3, 3), (8, 12))
"""

from __future__ import annotations

import warnings
from typing import Any, List, Optional

import torch
from typeguard import typechecked

from espnet2.asr.encoder.conformer_encoder import ConformerEncoder
from espnet2.legacy.nets.pytorch_backend.conformer.convolution import ConvolutionModule
from espnet2.legacy.nets.pytorch_backend.transformer.positionwise_feed_forward import (
    PositionwiseFeedForward,
)
from espnet_omni.nets.packed_state import unpack_state_dict
from espnet_omni.nets.pruned_conv_module import PrunedConvolutionModule
from espnet_omni.nets.subsampling import subsampling_convs


def _resize_ffn(ffn: torch.nn.Module, hidden: int, where: str) -> None:
    if not isinstance(ffn, PositionwiseFeedForward):
        raise ValueError(
            f"{where}: per-block feed-forward sizes need positionwise_layer_type="
            f"'linear' (PositionwiseFeedForward), got {type(ffn).__name__}"
        )
    if hidden < 0:
        raise ValueError(f"{where}: hidden units must be >= 0, got {hidden}")
    d = ffn.w_1.in_features
    with warnings.catch_warnings():  # hidden == 0: "zero-element tensors" init
        warnings.simplefilter("ignore", UserWarning)
        ffn.w_1 = torch.nn.Linear(d, hidden)
        ffn.w_2 = torch.nn.Linear(hidden, d)


def _resize_frontend(embed: torch.nn.Module, channels: List[int]) -> None:
    convs = subsampling_convs(embed)
    if len(channels) != len(convs):
        raise ValueError(
            f"subsampling_channels={channels} needs {len(convs)} values, one per "
            f"Conv2d of the front end"
        )
    if min(channels) < 1:
        raise ValueError(f"subsampling_channels={channels} must all be >= 1")
    old_last = embed.conv[convs[-1]].out_channels
    freq = embed.out.in_features // old_last  # F' (flattened as c * F' + f)
    in_ch = embed.conv[convs[0]].in_channels
    for idx, ch in zip(convs, channels):
        old = embed.conv[idx]
        embed.conv[idx] = torch.nn.Conv2d(
            in_ch, ch, old.kernel_size, old.stride, old.padding, old.dilation,
            old.groups, old.bias is not None, old.padding_mode,
        )
        in_ch = ch
    embed.out = torch.nn.Linear(channels[-1] * freq, embed.out.out_features)


def _resize_attention(blocks: list, heads: List[int]) -> None:
    if len(heads) != len(blocks):
        raise ValueError(
            f"attention_heads_per_block={heads} needs one value per block (num_blocks={len(blocks)})")
    for i, (block, h) in enumerate(zip(blocks, heads)):
        attn = block.self_attn
        if not 1 <= h <= attn.h:
            raise ValueError(f"attention_heads_per_block[{i}]={h} must be in [1, attention_heads={attn.h}]")
        d, inner = attn.linear_q.in_features, h * attn.d_k
        for n in ("linear_q", "linear_k", "linear_v", "linear_pos"):
            old = getattr(attn, n, None)
            if isinstance(old, torch.nn.Linear):
                setattr(attn, n, torch.nn.Linear(d, inner, bias=old.bias is not None))
        attn.linear_out = torch.nn.Linear(inner, d, bias=attn.linear_out.bias is not None)
        for n in ("pos_bias_u", "pos_bias_v"):
            if isinstance(getattr(attn, n, None), torch.nn.Parameter):
                setattr(attn, n, torch.nn.Parameter(torch.zeros(h, attn.d_k)))
        attn.h = h


def _resize_conv_modules(blocks: list, live: List[int], dead_channels: bool = True) -> None:
    if len(live) != len(blocks):
        raise ValueError(
            f"conv_channels={live} needs one value per block (num_blocks={len(blocks)})"
        )
    for i, (block, n) in enumerate(zip(blocks, live)):
        old = block.conv_module
        if not isinstance(old, ConvolutionModule):
            raise ValueError(f"conv_channels given but block {i} has no conv module "
                             "(use_cnn_module is off)")
        block.conv_module = PrunedConvolutionModule(
            old.pointwise_conv1.in_channels, old.depthwise_conv.kernel_size[0],
            old.activation, live_channels=n, bias=old.pointwise_conv1.bias is not None,
            dead_channels=dead_channels,
        )


class PrunedConformerEncoder(ConformerEncoder):
    """ConformerEncoder with per-block FFN sizes, front-end channels, packed loading.

    Args:
        input_size: as ``ConformerEncoder``.
        ffn_units: hidden units of each block's ``feed_forward``
            (``num_blocks`` values, >= 0); ``None``: ``linear_units``.
        macaron_ffn_units: the same for ``feed_forward_macaron`` (needs
            ``macaron_style: true``).
        conv_channels: live channels of each block's conv module
            (``num_blocks`` values in ``1 .. output_size``); ``None``: stock.
        subsampling_channels: output channels of each Conv2d of a conv2d*
            front end (2 for ``conv2d``, 3 for ``conv2d8``); ``None``: stock.
        attention_heads_per_block: heads kept in each block's self-attention
            (``structured`` exports; ``1 .. attention_heads``, each of the
            stock ``d_k``); ``None``: stock.
        conv_dead_channels: False for a ``structured`` export, whose removed
            conv-module channels contribute nothing (no dead-channel lookup).
        **kwargs: every other ``ConformerEncoder`` argument, unchanged.
    """

    @typechecked
    def __init__(
        self,
        input_size: int,
        ffn_units: Optional[List[int]] = None,
        macaron_ffn_units: Optional[List[int]] = None,
        conv_channels: Optional[List[int]] = None,
        subsampling_channels: Optional[List[int]] = None,
        attention_heads_per_block: Optional[List[int]] = None,
        conv_dead_channels: bool = True,
        **kwargs: Any,
    ):
        super().__init__(input_size, **kwargs)
        blocks = list(self.encoders)
        for key, sizes, attr in (
            ("ffn_units", ffn_units, "feed_forward"),
            ("macaron_ffn_units", macaron_ffn_units, "feed_forward_macaron"),
        ):
            if sizes is None:
                continue
            if len(sizes) != len(blocks):
                raise ValueError(
                    f"{key}={sizes} needs one value per block (num_blocks="
                    f"{len(blocks)})"
                )
            for i, (block, hidden) in enumerate(zip(blocks, sizes)):
                ffn = getattr(block, attr)
                if ffn is None:
                    raise ValueError(f"{key} given but block {i} has no {attr} "
                                     "(macaron_style is off)")
                _resize_ffn(ffn, hidden, f"{key}[{i}]")
        if conv_channels is not None:
            _resize_conv_modules(blocks, conv_channels, conv_dead_channels)
        if attention_heads_per_block is not None:
            _resize_attention(blocks, attention_heads_per_block)
        if subsampling_channels is not None:
            _resize_frontend(self.embed, subsampling_channels)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # Runs before the submodules load (they get copies filtered from this
        # dict afterwards), so expanding here is all a packed file needs.
        unpack_state_dict(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
