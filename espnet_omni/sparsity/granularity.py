"""What a mask keeps or drops as a whole: one class per granularity, one registry.

A :class:`Granularity` answers, for one weight viewed as an ``(out, in)`` matrix (trailing dims
flattened), everything the masks, the storage model and the export ask about its units:

- :meth:`~Granularity.check_shape`, :meth:`~Granularity.num_units`, :meth:`~Granularity.unit_size`,
  :meth:`~Granularity.groups`: the geometry ``keep_count`` counts over;
- :meth:`~Granularity.ranks`: the per-element rank of the element's unit (0 = highest score);
- :meth:`~Granularity.tile`, :meth:`~Granularity.compressed_bytes`: how a pruned weight is packed;
- :attr:`~Granularity.export_formats`: the physically smaller exports it allows beyond
  ``dense`` and ``sparse``; :attr:`~Granularity.tied`: whether units span layers (ranked by a
  :class:`~espnet_omni.sparsity.groups.StructuredGroup`, not by the layer).

Adding a granularity is one class here and one line in :data:`REGISTRY` (README "Extending",
with a worked example built by ``tests/sparsity/test_sparsity_granularity.py``).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch


def index_bytes(count: int) -> int:
    """Bytes of one index into ``count`` positions (uint16 up to 65536, else uint32)."""
    return 2 if count <= 1 << 16 else 4


def rank_of(scores: torch.Tensor) -> torch.Tensor:
    """Rank along the last dim (0 = largest score; ties to the lower index).

    One stable descending argsort plus a scatter. (An unstable sort of a
    unique int64 key, or an ``m x m`` compare for ``nm``, measured within
    15% of this on CPU: not worth the extra code.)

    >>> rank_of(torch.tensor([[1.0, 3.0, 3.0, 0.0]])).tolist()
    [[2, 0, 1, 3]]
    """
    order = torch.argsort(scores, dim=-1, descending=True, stable=True)
    arange = torch.arange(order.size(-1), dtype=torch.int32, device=order.device)
    ranks = torch.empty(order.shape, dtype=torch.int32, device=order.device)
    ranks.scatter_(-1, order, arange.expand(order.shape).contiguous())
    return ranks


class Granularity:
    """The protocol (defaults: one weight per unit, every weight of the layer one unit set).
    ``spec`` is the layer's :class:`~espnet_omni.sparsity.masks.MaskSpec` (block shape, ``m``)."""

    name: ClassVar[str]
    #: physically smaller export formats this granularity allows (beyond dense and sparse)
    export_formats: ClassVar[tuple[str, ...]] = ()
    #: units tied across layers, ranked by their StructuredGroup (a layer alone keeps all)
    tied: ClassVar[bool] = False

    def check_shape(self, rows: int, cols: int, shape: tuple, spec) -> None:
        """Raise naming the weight when ``spec`` cannot tile it."""

    def num_units(self, rows: int, cols: int, spec) -> int:
        """Units that ``keep_count`` counts over (per group: see :meth:`groups`)."""
        return rows * cols

    def unit_size(self, rows: int, cols: int, spec) -> int:
        """Weights per unit."""
        return 1

    def groups(self, rows: int, cols: int, spec) -> int:
        """Independent groups that each keep ``keep_count`` of their units (``nm``: one per
        ``m`` inputs of a row)."""
        return 1

    def ranks(self, w: torch.Tensor, spec) -> torch.Tensor:
        """``(rows, cols)`` int32 rank of each element's unit, from the float matrix ``w``."""
        raise NotImplementedError

    def tile(self, rows: int, cols: int, spec) -> tuple[int, int]:
        """The packing tile of a pruned weight (``(1, 1)``: one weight)."""
        return (1, 1)

    def compressed_bytes(self, rows: int, cols: int, spec, kept: int, kept_units: int,
                         dtype_bytes: int) -> int:
        """Bytes of the weight in this granularity's own compressed format (CSR of its tiles)."""
        bh, bw = self.tile(rows, cols, spec)
        return kept * dtype_bytes + kept_units * index_bytes(cols // bw) + (rows // bh + 1) * 4


class Unstructured(Granularity):
    """One weight, scored ``|w|``."""

    name = "unstructured"

    def ranks(self, w, spec):
        return rank_of(w.abs().reshape(-1)).reshape(w.shape)


class Block(Granularity):
    """A ``(bh, bw)`` tile, scored by its L2 norm."""

    name = "block"

    def check_shape(self, rows, cols, shape, spec):
        bh, bw = spec.block
        if rows % bh or cols % bw:
            raise ValueError(f"block {spec.block} does not divide weight {tuple(shape)} "
                             f"viewed as matrix ({rows}, {cols})")

    def num_units(self, rows, cols, spec):
        return (rows // spec.block[0]) * (cols // spec.block[1])

    def unit_size(self, rows, cols, spec):
        return spec.block[0] * spec.block[1]

    def ranks(self, w, spec):
        rows, cols = w.shape
        bh, bw = spec.block
        tiles = w.reshape(rows // bh, bh, cols // bw, bw)  # (R, bh, C, bw)
        scores = tiles.pow(2).sum(dim=(1, 3))  # (R, C); squared norm, same order
        r = rank_of(scores.reshape(-1)).reshape(rows // bh, 1, cols // bw, 1)
        return r.expand(rows // bh, bh, cols // bw, bw).reshape(rows, cols)

    def tile(self, rows, cols, spec):
        return tuple(spec.block)


class NM(Granularity):
    """One weight in each group of ``m`` consecutive inputs, ``|w|`` ranked inside its group."""

    name = "nm"

    def check_shape(self, rows, cols, shape, spec):
        if cols % spec.m:
            raise ValueError(f"nm group m={spec.m} does not divide the input dim {cols} of "
                             f"weight {tuple(shape)}")

    def num_units(self, rows, cols, spec):
        return spec.m

    def groups(self, rows, cols, spec):
        return rows * cols // spec.m

    def ranks(self, w, spec):
        rows, cols = w.shape
        return rank_of(w.abs().reshape(rows, cols // spec.m, spec.m)).reshape(rows, cols)

    def compressed_bytes(self, rows, cols, spec, kept, kept_units, dtype_bytes):
        return kept * dtype_bytes + math.ceil(kept * math.ceil(math.log2(max(spec.m, 2))) / 8)


class Row(Granularity):
    """One output channel, scored by its L2 norm; a ``row`` export drops the pruned rows."""

    name = "row"
    export_formats = ("row",)

    def num_units(self, rows, cols, spec):
        return rows

    def unit_size(self, rows, cols, spec):
        return cols

    def ranks(self, w, spec):
        rows, cols = w.shape
        return rank_of(w.norm(dim=1)).unsqueeze(1).expand(rows, cols)

    def tile(self, rows, cols, spec):
        return (1, cols)

    def compressed_bytes(self, rows, cols, spec, kept, kept_units, dtype_bytes):
        return kept_units * cols * dtype_bytes + kept_units * index_bytes(rows)


class Group(Granularity):
    """A unit tied across layers (an attention head, an FFN unit, a conv channel): ranked by its
    :class:`~espnet_omni.sparsity.groups.StructuredGroup`; a layer alone keeps every weight.
    Its sub-networks export physically smaller (``structured``)."""

    name = "group"
    export_formats = ("structured",)
    tied = True

    def num_units(self, rows, cols, spec):
        return rows  # never pruned alone

    def ranks(self, w, spec):
        return torch.zeros(w.shape, dtype=torch.int32, device=w.device)


#: name (``mask_granularity`` of a config) -> granularity
REGISTRY: dict[str, Granularity] = {g.name: g for g in (Unstructured(), Block(), NM(), Row(), Group())}


def granularity(name: str) -> Granularity:
    """The registered granularity ``name``; raises naming the valid ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"granularity {name!r} is not one of {tuple(REGISTRY)}") from None


def require_export_format(name: str, fmt: str) -> None:
    """Raise unless a supernet of granularity ``name`` can be exported as ``fmt``."""
    if fmt in ("dense", "sparse") or fmt in granularity(name).export_formats:
        return
    needs = [g.name for g in REGISTRY.values() if fmt in g.export_formats]
    own = granularity(name).export_formats
    raise ValueError(
        f"format {fmt!r} needs a supernet trained with mask_granularity {' or '.join(map(repr, needs))}; "
        f"this one uses {name!r} (its pruned weights are not whole {fmt} units): use format "
        f"'sparse' or 'dense'" + "".join(f" or {f!r}" for f in own))
