"""Row (structured) export: physically drop pruned units, fold their constants.

A row mask zeroes whole output rows of a weight but keeps the bias (masks prune
weights only, never biases), so a pruned unit ``j`` of a producer layer
outputs the constant ``b_j``, and ``act(b_j)`` after its activation. Where
the consumer of that output is *pointwise in the pruned dimension* (a Linear,
or a convolution without padding), the constant's contribution is the same
for every frame, so it moves exactly into the consumer's bias::

    b_cons += sum_{j pruned} act(b_prod[j]) * W_cons[:, j, :].sum(-1)

and the unit is removed: producer rows, producer bias entries, consumer
input columns (a group of ``F'`` columns per channel for the front end's
``out`` Linear, a ``kh x kw`` kernel slice for a Conv2d). The exported
function equals the masked supernet's up to float summation order.

What shrinks (:func:`compact_rows`):

* feed-forward (and macaron) pairs: ``w_1`` rows -> hidden units -> ``w_2``
  columns;
* the conv2d subsampling front end (when its convs are prunable): each
  Conv2d's output channels -> the next Conv2d's input channels (no padding,
  so a constant map stays constant) -> the ``out`` Linear's column groups;
* the conv module: a channel whose GLU value and gate rows are both pruned
  is a constant before the depthwise conv, but the conv's zero padding (and
  the zeroed padded frames) make its output vary over the first/last
  ``kernel // 2`` frames, so it cannot move into a bias. It leaves the
  convolutions instead and is computed in closed form from the utterance
  length (:mod:`espnet_omni.nets.pruned_conv_module`); a channel with one
  kept row stays (its pruned row as zeros).

What keeps stock shapes (masked rows stored as zeros, packed on disk):

* layers that write into the residual stream (``w_2``, ``linear_out``,
  ``pointwise_conv2``, ``embed.out`` rows): their output dims are the model
  dim, which every block shares;
* attention q/k: with relative positions a query dim also meets the
  positional keys (``matrix_bd``), so a constant query dim still changes
  the scores; v/out could shrink (attention weights sum to one, so a
  constant v dim is a constant output) but per-head dims would become
  ragged for ~4% of a block's MACs: not done.

A supernet that masked a row's bias with it (a pruned unit outputs exactly
0) would make the value-pruned conv channels and the v dims droppable too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, MutableMapping, Optional

import torch

from espnet2.legacy.nets.pytorch_backend.conformer.convolution import ConvolutionModule
from espnet2.legacy.nets.pytorch_backend.transformer.positionwise_feed_forward import (
    PositionwiseFeedForward,
)
from espnet_omni.sparsity.granularity import require_export_format
from espnet_omni.nets.omni_conformer import OmniConformerEncoder
from espnet_omni.nets.subsampling import subsampling_convs
from espnet_omni.nets.pruned_conv_module import PrunedConvolutionModule

State = MutableMapping[str, torch.Tensor]
#: Weights a row export adds that have pruned (zero) rows worth packing.
PACKED_EXTRAS = ("conv_module.dead_out",)


@dataclass
class RowSizes:
    """Kept sizes of a row export (``None``: stock size); the extra
    ``encoder_conf`` keys of ``PrunedConformerEncoder``."""

    ffn_units: Optional[list[int]] = None
    macaron_ffn_units: Optional[list[int]] = None
    conv_channels: Optional[list[int]] = None
    subsampling_channels: Optional[list[int]] = None

    def encoder_conf(self) -> dict[str, list[int]]:
        """The non-``None`` sizes, for ``encoder_conf``."""
        return {k: list(v) for k, v in vars(self).items() if v is not None}


def cut_unit_pair(
    state: State,
    producer: str,
    consumer: str,
    kept: torch.Tensor,
    act: Callable[[torch.Tensor], torch.Tensor],
) -> None:
    """Drop the producer's pruned output units and the consumer's matching
    inputs, folding ``act(producer bias)`` of the dropped units into the
    consumer bias (in place on ``state``).

    Args:
        state: holds ``<producer>.weight`` ``(R, ...)``, ``<producer>.bias``
            ``(R,)`` (optional), ``<consumer>.weight`` ``(O, R * g)`` (Linear,
            ``g`` inputs per unit, unit-major) or ``(O, R, kh, kw)`` (Conv2d
            without padding), ``<consumer>.bias`` ``(O,)``.
        kept: bool ``(R,)``, the units to keep.
        act: what lies between the two layers (elementwise).
    """
    wp = state[f"{producer}.weight"]
    rows = wp.shape[0]
    if kept.shape != (rows,):
        raise ValueError(f"{producer}: kept mask {tuple(kept.shape)} != ({rows},)")
    bp = state.get(f"{producer}.bias")
    wc = state[f"{consumer}.weight"]
    bc_key = f"{consumer}.bias"
    if bc_key not in state:
        raise ValueError(f"{consumer} has no bias to fold the pruned units into")
    out = wc.shape[0]
    wc3 = wc.reshape(out, rows, -1)  # (O, R, g)
    pruned = ~kept
    if bp is not None and bool(pruned.any()):
        const = act(bp[pruned].double())  # (P,)
        fold = wc3[:, pruned, :].double().sum(-1) @ const  # (O,)
        state[bc_key] = (state[bc_key].double() + fold).to(state[bc_key].dtype)
    new_shape = (out, -1) if wc.dim() == 2 else (out, int(kept.sum()), *wc.shape[2:])
    state[f"{consumer}.weight"] = wc3[:, kept, :].reshape(new_shape).contiguous()
    state[f"{producer}.weight"] = wp[kept].contiguous()
    if bp is not None:
        state[f"{producer}.bias"] = bp[kept].contiguous()


def _kept_rows(encoder: OmniConformerEncoder, name: str, rows: int) -> torch.Tensor:
    """Bool ``(rows,)``: rows the active mask keeps (all for a dense layer)."""
    if name not in encoder.prunable_layers():
        return torch.ones(rows, dtype=torch.bool)
    mask = encoder.get_submodule(name).bool_mask().cpu()
    return mask.reshape(mask.shape[0], -1).any(dim=1)


def _compact_ffns(
    encoder: OmniConformerEncoder, state: State, prefix: str, attr: str
) -> Optional[list[int]]:
    ffns = [getattr(block, attr, None) for block in encoder.encoders]
    if not all(isinstance(f, PositionwiseFeedForward) for f in ffns):
        return None  # absent (no macaron) or conv1d type: stock shapes
    units, stock = [], []
    for i, ffn in enumerate(ffns):
        name = f"encoders.{i}.{attr}"
        kept = _kept_rows(encoder, f"{name}.w_1", ffn.w_1.out_features)
        cut_unit_pair(state, f"{prefix}{name}.w_1", f"{prefix}{name}.w_2", kept,
                      ffn.activation)
        units.append(int(kept.sum()))
        stock.append(ffn.w_1.out_features)
    return units if units != stock else None


def compact_conv_module(
    module: ConvolutionModule, state: State, name: str, value: torch.Tensor,
    gate: torch.Tensor,
) -> int:
    """Keep the channels with a kept value or gate row; turn the others into
    ``PrunedConvolutionModule``'s dead-channel parameters (in place).

    Args:
        module: the (masked) stock conv module, for ``norm.eps``.
        state: holds ``<name>.pointwise_conv1/depthwise_conv/norm/
            pointwise_conv2`` entries with the masked weights.
        value, gate: bool ``(C,)``: kept value rows / gate rows of
            ``pointwise_conv1``.

    Returns:
        The number of live channels (``live_channels`` of the new module).
    """
    live = value | gate  # (C,)
    if not bool(live.any()):
        live[0] = True  # a 0-channel conv breaks; computing one dead channel is exact
    dead = ~live
    c = live.numel()
    w1 = state[f"{name}.pointwise_conv1.weight"]  # (2C, C, 1)
    b1 = state.get(f"{name}.pointwise_conv1.bias")
    dw = state[f"{name}.depthwise_conv.weight"]  # (C, 1, k)
    bdw = state.get(f"{name}.depthwise_conv.bias")
    w2 = state[f"{name}.pointwise_conv2.weight"]  # (C, C, 1)
    norm = {k: state[f"{name}.norm.{k}"].double()
            for k in ("weight", "bias", "running_mean", "running_var")}
    dtype = w1.dtype
    b1d = b1.double() if b1 is not None else torch.zeros(2 * c, dtype=torch.float64)
    bdwd = bdw.double() if bdw is not None else torch.zeros(c, dtype=torch.float64)
    u = b1d[:c][dead] * torch.sigmoid(b1d[c:][dead])  # (D,) the constant channels
    inv_std = torch.rsqrt(norm["running_var"][dead] + module.norm.eps)
    gamma = norm["weight"][dead] * inv_std
    taps = dw[dead, 0, :].double()  # (D, k)
    cumsum = torch.cat([taps.new_zeros(taps.shape[0], 1), taps.cumsum(-1)], dim=1)
    state[f"{name}.dead_kernel_cumsum"] = cumsum.to(dtype)
    state[f"{name}.dead_scale"] = (gamma * u).to(dtype)
    state[f"{name}.dead_shift"] = (
        gamma * (bdwd[dead] - norm["running_mean"][dead]) + norm["bias"][dead]
    ).to(dtype)
    state[f"{name}.dead_out"] = w2[:, dead, 0].contiguous()
    rows = torch.cat([live, live])  # value rows then gate rows
    state[f"{name}.pointwise_conv1.weight"] = w1[rows].contiguous()
    if b1 is not None:
        state[f"{name}.pointwise_conv1.bias"] = b1[rows].contiguous()
    state[f"{name}.depthwise_conv.weight"] = dw[live].contiguous()
    if bdw is not None:
        state[f"{name}.depthwise_conv.bias"] = bdw[live].contiguous()
    for k in ("weight", "bias", "running_mean", "running_var"):
        state[f"{name}.norm.{k}"] = state[f"{name}.norm.{k}"][live].contiguous()
    state[f"{name}.pointwise_conv2.weight"] = w2[:, live].contiguous()
    return int(live.sum())


def _compact_conv_modules(
    encoder: OmniConformerEncoder, state: State, prefix: str
) -> Optional[list[int]]:
    modules = [block.conv_module for block in encoder.encoders]
    # A dual-mode conv module (streaming-capable) is still a ConvolutionModule
    # with the same weights; an already pruned one is not compactable again.
    if not all(isinstance(m, ConvolutionModule) and not isinstance(m, PrunedConvolutionModule) for m in modules):
        return None
    kept = []  # (value rows, gate rows) kept, each (C,)
    for i, module in enumerate(modules):
        c = module.pointwise_conv2.out_channels
        rows = _kept_rows(encoder, f"encoders.{i}.conv_module.pointwise_conv1", 2 * c)
        kept.append((rows[:c], rows[c:]))
    if all(bool((v | g).all()) for v, g in kept):
        return None  # every channel live: stock modules, state untouched
    return [
        compact_conv_module(m, state, f"{prefix}encoders.{i}.conv_module", v, g)
        for i, (m, (v, g)) in enumerate(zip(modules, kept))
    ]


def _compact_frontend(
    encoder: OmniConformerEncoder, state: State, prefix: str
) -> Optional[list[int]]:
    prunable = encoder.prunable_layers()
    embed = encoder.embed
    if not any(n.startswith("embed.conv.") for n in prunable):
        return None
    idx = subsampling_convs(embed)
    chain = [f"embed.conv.{i}" for i in idx] + ["embed.out"]
    channels, stock = [], []
    for k, (producer, consumer) in enumerate(zip(chain[:-1], chain[1:])):
        conv = embed.conv[idx[k]]
        nxt = encoder.get_submodule(consumer)
        act = embed.conv[idx[k] + 1] if idx[k] + 1 < len(embed.conv) else None
        exact = isinstance(act, torch.nn.ReLU) and (
            isinstance(nxt, torch.nn.Linear)
            or (nxt.groups == 1 and tuple(nxt.padding) == (0, 0))
        )
        kept = _kept_rows(encoder, producer, conv.out_channels)
        if not exact:
            kept = torch.ones_like(kept)
        if not bool(kept.any()):
            kept[0] = True  # a 0-channel conv breaks; the kept one is exact anyway
        cut_unit_pair(state, prefix + producer, prefix + consumer, kept,
                      lambda b: torch.relu(b))
        channels.append(int(kept.sum()))
        stock.append(conv.out_channels)
    return channels if channels != stock else None


@torch.no_grad()
def compact_rows(
    encoder: OmniConformerEncoder, state: State, prefix: str = "encoder."
) -> RowSizes:
    """Shrink a masked state dict in place (see the module docstring).

    Args:
        encoder: the supernet encoder with the sub-network active (its masks
            decide the kept rows).
        state: a state dict holding the encoder's *masked* weights under
            ``prefix`` (pruned rows zero).

    Returns:
        The kept sizes, for ``PrunedConformerEncoder``'s ``encoder_conf``.
    """
    require_export_format(encoder.mask_spec.granularity, "row")
    return RowSizes(
        ffn_units=_compact_ffns(encoder, state, prefix, "feed_forward"),
        macaron_ffn_units=_compact_ffns(encoder, state, prefix, "feed_forward_macaron"),
        conv_channels=_compact_conv_modules(encoder, state, prefix),
        subsampling_channels=_compact_frontend(encoder, state, prefix),
    )
