"""Tied structured groups: a unit spans several layers and is kept or dropped whole.

With ``mask_granularity: group`` a supernet prunes *units that an export can
physically remove*, instead of weights or rows of one layer:

==========================  =====================================================
group (``prunable`` name)   one unit, kept or dropped together
==========================  =====================================================
``encoders.<i>.heads``      an attention head: its ``d_k`` rows of ``linear_q``,
                            ``linear_k``, ``linear_v``, ``linear_pos`` and its
                            ``d_k`` columns of ``linear_out`` (plus its
                            ``pos_bias_u`` / ``pos_bias_v`` rows)
``encoders.<i>.ffn_units``  a feed-forward hidden unit: a ``w_1`` row and a
``encoders.<i>.macaron_``   ``w_2`` column (``feed_forward`` / ``feed_forward_
``units``                   macaron``)
``encoders.<i>.conv_``      a conv-module channel: its GLU value and gate rows of
``channels``                ``pointwise_conv1``, its ``pointwise_conv2`` column
                            (plus its depthwise filter and BatchNorm entries)
``frontend_channels``       the output channels of each Conv2d of the ``conv2d``
                            subsampling: rows of that conv, the matching input
                            columns (a ``kh x kw`` slice) of the next conv or
                            ``F'`` columns of ``embed.out``
==========================  =====================================================

Every unit's *consumer* weights (``linear_out``, ``w_2``, ``pointwise_conv2``,
the next conv, ``embed.out``) are masked with its producer rows, so a dropped
unit contributes exactly zero whatever its biases: the masked supernet and the
physically smaller export compute the same function (the export then drops the
unit's biases, depthwise filter and norm entries too).

A group's *sparsity* is the fraction of its units dropped
(:func:`~espnet_omni.sparsity.masks.keep_count` of its unit count): one value
per group, so a :class:`~espnet_omni.sparsity.subnet.SubnetConfig` of a
``group`` supernet has one key per group. Units are ranked by the sum of the
squared norms of all their weight slices (one sort per unit set, refreshed by
:meth:`StructuredGroup.refresh_ranks`), so masks are nested like every other
granularity. The front-end group holds two unit sets (the channels of each
conv) that share its sparsity.

Attention heads and channels keep at least one unit at any sparsity (a
zero-size attention or convolution cannot run); feed-forward layers may keep
none. A :class:`StructuredGroup` is an ``nn.Module`` without parameters or buffers
(nothing in ``state_dict``; stock checkpoints load), registered under the
encoder so that ``encoder.get_submodule(group_name)`` finds it; it refers to
its member layers without owning them.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import nn

from espnet_omni.sparsity.masks import check_sparsity, keep_count

#: Float masks a group keeps per member layer (one per recently used sparsity).
GROUP_MASK_CACHE = 6


@dataclass(frozen=True)
class Slice:
    """Where unit ``u`` of a unit set lies in one weight.

    The weight is viewed as a matrix ``(out, in)`` (trailing dims flattened,
    as everywhere in :mod:`~espnet_omni.sparsity.masks`). Unit ``u`` owns the
    indices ``offset + u * size .. offset + (u + 1) * size`` along ``axis``
    (0: rows, 1: columns).
    """

    layer: str
    axis: int
    size: int
    offset: int = 0


@dataclass(frozen=True)
class Extra:
    """A parameter that is not masked but is dropped with the unit by an export
    (a bias entry, a depthwise filter, a norm entry): counted in the cost.
    Unit ``u`` owns ``size`` leading-dim entries from ``offset + u * size``."""

    param: str
    size: int
    offset: int = 0


@dataclass(frozen=True)
class UnitSet:
    """``units`` units spread over ``slices`` (and ``extras``); at least
    ``min_units`` stay at any sparsity (0 for a feed-forward layer)."""

    units: int
    slices: tuple[Slice, ...]
    extras: tuple[Extra, ...] = ()
    min_units: int = 1  # a zero-head attention or zero-channel conv cannot run


def _matrix(w: torch.Tensor) -> torch.Tensor:
    return w.detach().reshape(w.shape[0], -1)


def _index(slc: Slice, units: torch.Tensor) -> torch.Tensor:
    """Indices along ``slc.axis`` owned by ``units`` (1-D long)."""
    start = slc.offset + units * slc.size
    return (start[:, None] + torch.arange(slc.size)[None, :]).reshape(-1)


class StructuredGroup(nn.Module):
    """One prunable group of a ``group`` supernet (see the module docstring).

    Args:
        name: the group's name (its key in a SubnetConfig).
        unit_sets: the units, their weight slices and extras.
        layers: name -> masked layer (every ``Slice.layer``).
        params: name -> parameter (every ``Extra.param``).

    Quacks like a masked layer where a supernet needs one: ``sparsity``,
    ``refresh_ranks()``, ``nonzero_params()``, ``size_bytes()``,
    ``member_parameters()``.
    """

    def __init__(self, name: str, unit_sets: Sequence[UnitSet],
                 layers: dict[str, nn.Module], params: dict[str, nn.Parameter]) -> None:
        super().__init__()
        self.name = name
        self.unit_sets = tuple(unit_sets)
        for us in self.unit_sets:
            for s in us.slices:
                if s.layer not in layers:
                    raise ValueError(f"group {name}: no layer {s.layer!r}")
                w = _matrix(layers[s.layer].weight)
                extent = s.offset + us.units * s.size
                if extent > w.shape[s.axis]:
                    raise ValueError(
                        f"group {name}: {us.units} units x {s.size} from {s.offset} need "
                        f"{extent} along axis {s.axis} of {s.layer} {tuple(w.shape)}")
        # references, not submodules: the layers belong to the encoder's tree
        object.__setattr__(self, "_layers", dict(layers))
        object.__setattr__(self, "_params", dict(params))
        self._sparsity = 0.0
        self._ranks: list[torch.Tensor] = []
        self._cache: OrderedDict[float, dict[str, torch.Tensor | None]] = OrderedDict()
        self.refresh_ranks()

    # ------------------------------------------------------------- ranking
    @torch.no_grad()
    def unit_scores(self) -> list[torch.Tensor]:
        """Per unit set: the summed squared norm of each unit's weight slices."""
        out = []
        for us in self.unit_sets:
            score = torch.zeros(us.units, dtype=torch.float64)
            for s in us.slices:
                w = _matrix(self._layers[s.layer].weight).float().cpu()
                end = s.offset + us.units * s.size
                if s.axis == 0:
                    score += w[s.offset:end].pow(2).reshape(us.units, -1).sum(1).double()
                else:
                    w = w[:, s.offset:end].pow(2)
                    score += w.reshape(w.shape[0], us.units, s.size).sum((0, 2)).double()
            out.append(score)
        return out

    @torch.no_grad()
    def refresh_ranks(self) -> None:
        """Re-rank the units from the live weights (descending score, ties to
        the lower index); drops the cached masks."""
        self._ranks = []
        for score in self.unit_scores():
            order = torch.argsort(score, descending=True, stable=True)
            ranks = torch.empty_like(order)
            ranks[order] = torch.arange(order.numel())
            self._ranks.append(ranks)
        self._cache.clear()
        self._apply_masks()

    def kept_units(self, sparsity: float | None = None) -> list[torch.Tensor]:
        """Per unit set: bool ``(units,)``, the units kept at ``sparsity``
        (default: the active one)."""
        s = self._sparsity if sparsity is None else check_sparsity(sparsity)
        return [r < max(keep_count(s, r.numel()), us.min_units)
                for r, us in zip(self._ranks, self.unit_sets)]

    # ------------------------------------------------------------- masks
    def layer_masks(self, sparsity: float | None = None) -> dict[str, torch.Tensor]:
        """Bool mask (the weight's shape) of every member layer at ``sparsity``."""
        kept = self.kept_units(sparsity)
        masks: dict[str, torch.Tensor] = {}
        for us, keep in zip(self.unit_sets, kept):
            dropped = torch.nonzero(~keep).reshape(-1)
            for s in us.slices:
                w = self._layers[s.layer].weight
                m = masks.get(s.layer)
                if m is None:
                    m = torch.ones(w.shape[0], math.prod(w.shape[1:]), dtype=torch.bool)
                if dropped.numel():
                    idx = _index(s, dropped)
                    if s.axis == 0:
                        m[idx] = False
                    else:
                        m[:, idx] = False
                masks[s.layer] = m
        return {k: m.reshape(self._layers[k].weight.shape) for k, m in masks.items()}

    def _apply_masks(self) -> None:
        """Give every member layer its float mask at the active sparsity
        (``None`` at sparsity 0: the stock forward)."""
        key = self._sparsity
        floats = self._cache.get(key)
        if floats is None:
            floats = {}
            for name, m in self.layer_masks().items():
                w = self._layers[name].weight
                floats[name] = None if bool(m.all()) else m.to(device=w.device, dtype=w.dtype)
            if GROUP_MASK_CACHE > 0:
                self._cache[key] = floats
                while len(self._cache) > GROUP_MASK_CACHE:
                    self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        for name, f in floats.items():
            w = self._layers[name].weight
            if f is not None and (f.device != w.device or f.dtype != w.dtype):
                f = f.to(device=w.device, dtype=w.dtype)
                floats[name] = f
            self._layers[name].group_mask = f

    @property
    def sparsity(self) -> float:
        """Fraction of the units dropped, in ``[0, 1)``."""
        return self._sparsity

    @sparsity.setter
    def sparsity(self, value: float) -> None:
        self._sparsity = check_sparsity(value, f"{self.name}.sparsity")
        self._apply_masks()

    # ------------------------------------------------------------- cost
    def member_parameters(self) -> list[nn.Parameter]:
        """Parameters whose size this group decides (weights, biases, extras)."""
        out, seen = [], set()
        for us in self.unit_sets:
            for s in us.slices:
                layer = self._layers[s.layer]
                for p in (layer.weight, getattr(layer, "bias", None)):
                    if p is not None and id(p) not in seen:
                        seen.add(id(p))
                        out.append(p)
            for e in us.extras:
                p = self._params[e.param]
                if id(p) not in seen:
                    seen.add(id(p))
                    out.append(p)
        return out

    def nonzero_params(self, sparsity: float | None = None) -> int:
        """Parameters of the member layers and extras an export at ``sparsity``
        keeps: kept weights, the biases of kept rows (a bias of an unpruned
        row dimension stays whole), the kept units' extras."""
        total = 0
        kept = self.kept_units(sparsity)
        masks = self.layer_masks(sparsity)
        row_kept = {name: _matrix(m).any(1) for name, m in masks.items()}
        for name, m in masks.items():
            total += int(m.sum())
            bias = getattr(self._layers[name], "bias", None)
            if bias is not None:
                total += int(row_kept[name].sum())
        counted = set()
        for us, keep in zip(self.unit_sets, kept):
            for e in us.extras:
                if e.param in counted:
                    continue
                counted.add(e.param)
                p = self._params[e.param]
                per = p[0].numel() if p.dim() else 1
                dropped = int((~keep).sum()) * e.size
                total += p.numel() - dropped * per
        return total

    def size_bytes(self, dtype_bytes: int = 4, storage: str = "auto", sparsity: float | None = None) -> int:
        """Bytes of the exported (physically smaller, dense) members: every
        kept parameter at ``dtype_bytes`` (``storage`` is accepted for the
        masked-layer interface; a structured export stores dense tensors)."""
        return self.nonzero_params(sparsity) * dtype_bytes

    def extra_repr(self) -> str:
        units = "+".join(str(us.units) for us in self.unit_sets)
        return f"{self.name}: {units} units, sparsity={self._sparsity}"


def member_names(sets: Iterable[UnitSet]) -> list[str]:
    """Every layer name of ``sets`` once, in order."""
    out: list[str] = []
    for us in sets:
        for s in us.slices:
            if s.layer not in out:
                out.append(s.layer)
    return out


def attach_groups(encoder: nn.Module, unit_sets: dict[str, list[UnitSet]]) -> dict[str, StructuredGroup]:
    """Build a :class:`StructuredGroup` per entry (its layers must already be
    masked ``group`` layers) and register it under the encoder at its name."""
    out = {}
    for name, sets in unit_sets.items():
        layers = {n: encoder.get_submodule(n) for n in member_names(sets)}
        params = {e.param: encoder.get_parameter(e.param) for us in sets for e in us.extras}
        group = StructuredGroup(name, sets, layers, params)
        parent, _, leaf = name.rpartition(".")
        (encoder.get_submodule(parent) if parent else encoder).add_module(leaf, group)
        out[name] = group
    return out


def owned_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The parameters whose count a prunable unit decides: a masked layer's
    own (weight, bias), a group's :meth:`~StructuredGroup.member_parameters`."""
    if isinstance(module, StructuredGroup):
        return module.member_parameters()
    return list(module.parameters(recurse=False))
