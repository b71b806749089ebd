"""Structured export of a ``group`` supernet: drop whole heads, units and channels.

In a ``mask_granularity: group`` supernet (:mod:`~espnet_omni.sparsity.groups`)
a dropped unit's consumer weights are masked with its producer rows, so the
unit contributes exactly zero: removing it changes nothing but the shapes.
:func:`compact_groups` does that on a masked state dict:

* attention heads: the head's rows of ``linear_q/k/v`` (weights and biases),
  ``linear_pos`` and ``pos_bias_u/v``, its ``linear_out`` columns
  (``attention_heads_per_block``);
* feed-forward units: ``w_1`` rows and biases, ``w_2`` columns (``ffn_units``,
  ``macaron_ffn_units``);
* conv-module channels: the GLU value and gate rows of ``pointwise_conv1``,
  the depthwise filter and bias, the BatchNorm entries (statistics included),
  the ``pointwise_conv2`` column (``conv_channels``; no dead channels:
  ``conv_dead_channels: false``);
* front-end channels: each subsampling conv's output channels and the next
  layer's matching inputs (``subsampling_channels``).

The groups never drop the last head or channel of a layer (a zero-size
convolution or attention cannot run); feed-forward layers may keep zero units.
"""

from __future__ import annotations

from typing import Optional

import torch

from espnet_omni.sparsity.granularity import require_export_format
from espnet_omni.export.row import State, cut_unit_pair
from espnet_omni.nets.omni_conformer import OmniConformerEncoder
from espnet_omni.nets.subsampling import subsampling_convs


def _kept(encoder: OmniConformerEncoder, name: str, units: int, index: int = 0) -> torch.Tensor:
    """Bool ``(units,)`` kept units of group ``name`` (all when it is not prunable)."""
    group = encoder.group(name)
    if group is None:
        return torch.ones(units, dtype=torch.bool)
    return group.kept_units()[index].clone()


def _rows(state: State, key: str, idx: torch.Tensor) -> None:
    if key in state:
        state[key] = state[key][idx].contiguous()


def _compact_heads(encoder: OmniConformerEncoder, state: State, prefix: str) -> Optional[list[int]]:
    heads, stock = [], []
    for i, block in enumerate(encoder.encoders):
        attn = block.self_attn
        h, d_k = attn.h, attn.d_k
        kept = _kept(encoder, f"encoders.{i}.heads", h)
        rows = kept.repeat_interleave(d_k)  # (h * d_k,)
        p = f"{prefix}encoders.{i}.self_attn"
        for n in ("linear_q", "linear_k", "linear_v", "linear_pos"):
            _rows(state, f"{p}.{n}.weight", rows)
            _rows(state, f"{p}.{n}.bias", rows)
        for n in ("pos_bias_u", "pos_bias_v"):
            _rows(state, f"{p}.{n}", kept)
        w = state[f"{p}.linear_out.weight"]
        state[f"{p}.linear_out.weight"] = w[:, rows].contiguous()
        heads.append(int(kept.sum()))
        stock.append(h)
    return heads if heads != stock else None


def _compact_ffns(encoder: OmniConformerEncoder, state: State, prefix: str, attr: str,
                  key: str) -> Optional[list[int]]:
    units, stock = [], []
    for i, block in enumerate(encoder.encoders):
        ffn = getattr(block, attr, None)
        if ffn is None:
            return None
        n = ffn.w_1.out_features
        kept = _kept(encoder, f"encoders.{i}.{key}", n)
        name = f"{prefix}encoders.{i}.{attr}"
        cut_unit_pair(state, f"{name}.w_1", f"{name}.w_2", kept, ffn.activation)
        units.append(int(kept.sum()))
        stock.append(n)
    return units if units != stock else None


def _compact_convs(encoder: OmniConformerEncoder, state: State, prefix: str) -> Optional[list[int]]:
    convs = [getattr(block, "conv_module", None) for block in encoder.encoders]
    if any(conv is None for conv in convs):
        return None
    keeps = [_kept(encoder, f"encoders.{i}.conv_channels", conv.pointwise_conv2.in_channels)
             for i, conv in enumerate(convs)]
    if all(bool(k.all()) for k in keeps):
        return None  # every channel kept: stock conv modules, state untouched
    live = []
    for i, (conv, kept) in enumerate(zip(convs, keeps)):
        p = f"{prefix}encoders.{i}.conv_module"
        both = torch.cat([kept, kept])  # value rows, then gate rows
        _rows(state, f"{p}.pointwise_conv1.weight", both)
        _rows(state, f"{p}.pointwise_conv1.bias", both)
        for n in ("depthwise_conv.weight", "depthwise_conv.bias", "norm.weight", "norm.bias",
                  "norm.running_mean", "norm.running_var"):
            _rows(state, f"{p}.{n}", kept)
        w = state[f"{p}.pointwise_conv2.weight"]
        state[f"{p}.pointwise_conv2.weight"] = w[:, kept].contiguous()
        # PrunedConvolutionModule(dead_channels=False) has empty dead-channel tensors
        k = conv.depthwise_conv.kernel_size[0]
        state[f"{p}.dead_kernel_cumsum"] = w.new_zeros(0, k + 1)
        state[f"{p}.dead_scale"] = w.new_zeros(0)
        state[f"{p}.dead_shift"] = w.new_zeros(0)
        state[f"{p}.dead_out"] = w.new_zeros(w.shape[0], 0)
        live.append(int(kept.sum()))
    return live


def _compact_frontend(encoder: OmniConformerEncoder, state: State, prefix: str) -> Optional[list[int]]:
    if encoder.group("frontend_channels") is None:
        return None
    embed = encoder.embed
    idx = subsampling_convs(embed)
    chain = [f"embed.conv.{i}" for i in idx] + ["embed.out"]
    channels = []
    for k, (producer, consumer) in enumerate(zip(chain[:-1], chain[1:])):
        n = embed.conv[idx[k]].out_channels
        kept = _kept(encoder, "frontend_channels", n, k)
        # the consumer's columns of a dropped channel are masked: the fold adds zero
        cut_unit_pair(state, prefix + producer, prefix + consumer, kept, torch.relu)
        channels.append(int(kept.sum()))
    return channels


@torch.no_grad()
def compact_groups(encoder: OmniConformerEncoder, state: State, prefix: str = "encoder.") -> dict:
    """Shrink a masked state dict of a ``group`` supernet in place.

    Args:
        encoder: the supernet encoder, the sub-network active.
        state: the encoder's masked weights under ``prefix``.

    Returns:
        The ``encoder_conf`` keys of ``PrunedConformerEncoder`` (only sizes
        that differ from the stock ones).
    """
    require_export_format(encoder.mask_spec.granularity, "structured")
    conf: dict = {}
    for key, sizes in (
        ("attention_heads_per_block", _compact_heads(encoder, state, prefix)),
        ("macaron_ffn_units", _compact_ffns(encoder, state, prefix, "feed_forward_macaron", "macaron_units")),
        ("ffn_units", _compact_ffns(encoder, state, prefix, "feed_forward", "ffn_units")),
        ("conv_channels", _compact_convs(encoder, state, prefix)),
        ("subsampling_channels", _compact_frontend(encoder, state, prefix)),
    ):
        if sizes is not None:
            conf[key] = sizes
    if "conv_channels" in conf:
        conf["conv_dead_channels"] = False
    return conf

