"""The structured unit sets of an ESPnet Conformer encoder (:mod:`espnet_omni.sparsity.groups`).

:func:`conformer_unit_sets` names what a ``group`` supernet prunes in a Conformer: per block its
attention heads, both feed-forwards' hidden units and its conv-module channels, and the
``conv2d*`` front end's channels. The generic machinery (:class:`~espnet_omni.sparsity.groups.UnitSet`,
:class:`~espnet_omni.sparsity.groups.StructuredGroup`) knows no Conformer; another encoder
gives its own unit sets the same way.
"""

from __future__ import annotations

import math

from torch import nn

from espnet_omni.nets.subsampling import subsampling_convs
from espnet_omni.sparsity.groups import Extra, Slice, UnitSet


def attention_heads_group(prefix: str, attn: nn.Module) -> UnitSet:
    """The head unit set of one (relative-position) multi-head attention."""
    h, d_k = attn.h, attn.d_k
    slices = [Slice(f"{prefix}.{n}", 0, d_k) for n in ("linear_q", "linear_k", "linear_v", "linear_pos")
              if isinstance(getattr(attn, n, None), nn.Linear)]
    slices.append(Slice(f"{prefix}.linear_out", 1, d_k))
    extras = tuple(Extra(f"{prefix}.{n}", 1) for n in ("pos_bias_u", "pos_bias_v")
                   if isinstance(getattr(attn, n, None), nn.Parameter))
    return UnitSet(h, tuple(slices), extras)


def conformer_unit_sets(encoder: nn.Module, frontend: bool) -> dict[str, list[UnitSet]]:
    """The structured groups of an ESPnet Conformer encoder: name -> unit sets.

    Per block: ``heads`` (relative or absolute multi-head self-attention),
    ``macaron_units`` and ``ffn_units`` (``PositionwiseFeedForward``),
    ``conv_channels`` (the conv module); with ``frontend``, the
    ``frontend_channels`` of a ``conv2d*`` subsampling. Absent modules give no
    group.
    """
    from espnet2.legacy.nets.pytorch_backend.conformer.convolution import ConvolutionModule
    from espnet2.legacy.nets.pytorch_backend.transformer.positionwise_feed_forward import (
        PositionwiseFeedForward,
    )

    groups: dict[str, list[UnitSet]] = {}
    for i, block in enumerate(encoder.encoders):
        p = f"encoders.{i}"
        attn = getattr(block, "self_attn", None)
        if attn is not None and hasattr(attn, "d_k"):
            groups[f"{p}.heads"] = [attention_heads_group(f"{p}.self_attn", attn)]
        for attr, key in (("feed_forward_macaron", "macaron_units"), ("feed_forward", "ffn_units")):
            ffn = getattr(block, attr, None)
            if isinstance(ffn, PositionwiseFeedForward):
                groups[f"{p}.{key}"] = [UnitSet(ffn.w_1.out_features, (
                    Slice(f"{p}.{attr}.w_1", 0, 1), Slice(f"{p}.{attr}.w_2", 1, 1)), min_units=0)]
        conv = getattr(block, "conv_module", None)
        if isinstance(conv, ConvolutionModule):
            c, q = conv.pointwise_conv2.in_channels, f"{p}.conv_module"
            extras = tuple(Extra(f"{q}.{n}", 1) for n in
                           ("depthwise_conv.weight", "depthwise_conv.bias", "norm.weight", "norm.bias")
                           if _has_param(encoder, f"{q}.{n}"))
            groups[f"{p}.conv_channels"] = [UnitSet(c, (
                Slice(f"{q}.pointwise_conv1", 0, 1), Slice(f"{q}.pointwise_conv1", 0, 1, c),
                Slice(f"{q}.pointwise_conv2", 1, 1)), extras)]
    if frontend:
        embed = encoder.embed
        idx = subsampling_convs(embed)  # raises for another front end
        sets = []
        for k, i in enumerate(idx):
            conv = embed.conv[i]
            if k + 1 < len(idx):
                nxt = embed.conv[idx[k + 1]]
                consumer = Slice(f"embed.conv.{idx[k + 1]}", 1, math.prod(nxt.kernel_size))
            else:
                consumer = Slice("embed.out", 1, embed.out.in_features // conv.out_channels)
            sets.append(UnitSet(conv.out_channels, (Slice(f"embed.conv.{i}", 0, 1), consumer)))
        groups["frontend_channels"] = sets
    return groups


def _has_param(module: nn.Module, name: str) -> bool:
    try:
        return isinstance(module.get_parameter(name), nn.Parameter)
    except AttributeError:
        return False
