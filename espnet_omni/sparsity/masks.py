"""Nested magnitude-pruning masks: rank once, threshold at any sparsity.

A *unit* is what a mask keeps or drops as a whole; its *score* decides the
order. Every weight is viewed as a matrix ``(out, in)`` where ``in`` flattens
all trailing dims (a Conv1d ``(out, in, k)`` becomes ``(out, in * k)``).

=============  ======================  ==========================================
granularity    unit                    score
=============  ======================  ==========================================
unstructured   one weight              ``|w|``
block          a ``(bh, bw)`` tile     L2 norm of the tile
nm             one weight in a group   ``|w|``, ranked inside each group of ``m``
               of ``m`` consecutive    consecutive weights along ``in``
               inputs
row            one output channel      L2 norm of the row
group          a unit tied across      summed squared norm of its slices (see
               layers (a head, an      :mod:`~espnet_omni.sparsity.groups`: the
               FFN unit, a channel)    group ranks; a layer alone keeps all)
=============  ======================  ==========================================

:func:`unit_ranks` sorts the scores once per layer (descending, stable, so a
tie goes to the lower flat index) and gives every *element* the rank of its
unit, in the weight's own shape (``int32``). A mask is then one compare,
``ranks < keep(s)``: masks at a higher sparsity are subsets of those at a
lower one by construction (nesting), and any number of sparsities costs one
sort. Element ranks (not a compact per-unit rank plus an expander) keep
:func:`mask_at` a single broadcast compare for every granularity.

``keep(s) = round_half_up((1 - s) * units)`` units survive, where ``units`` is
the layer's unit count (``m`` per group for ``nm``); sparsity 0 keeps all and
valid sparsities are ``[0, 1)``. A high sparsity on a small layer may round to
0 kept units: the whole layer is then masked (allowed, not clamped).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import torch

from espnet_omni.sparsity.granularity import REGISTRY, Granularity



@dataclass(frozen=True)
class MaskSpec:
    """How a layer is pruned (the same spec for every layer of a supernet).

    Attributes:
        granularity: A name of :data:`~espnet_omni.sparsity.granularity.REGISTRY`.
        block: ``(bh, bw)`` tile for ``block`` (rows, input columns); 1x4 is
            the common CPU-friendly shape.
        n: The ``N`` of the deployment pattern ``N:M`` (2 for 2:4). Masks use
            ``keep = round((1 - s) * m)`` per group, so N:M is the sparsity
            :attr:`nm_sparsity` ``= 1 - n / m``; ``n`` documents the target
            and is validated, it does not change a mask.
        m: Group length for ``nm`` (along the input dim).

    >>> MaskSpec("nm", n=2, m=4).nm_sparsity
    0.5
    >>> MaskSpec("blocky")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: MaskSpec.granularity='blocky' is not one of ('unstructured', ...
    """

    granularity: str = "unstructured"
    block: tuple[int, int] = (1, 4)
    n: int = 2
    m: int = 4

    def __post_init__(self) -> None:
        if self.granularity not in REGISTRY:
            raise ValueError(
                f"MaskSpec.granularity={self.granularity!r} is not one of "
                f"{tuple(REGISTRY)}"
            )
        block = tuple(int(b) for b in self.block)  # YAML gives a list
        object.__setattr__(self, "block", block)
        if len(block) != 2 or min(block) < 1:
            raise ValueError(
                f"MaskSpec.block={list(self.block)} must be two ints >= 1 (bh, bw)"
            )
        if self.m < 1:
            raise ValueError(f"MaskSpec.m={self.m} must be >= 1")
        if not 0 < self.n <= self.m:
            raise ValueError(f"MaskSpec.n={self.n} must be in [1, m={self.m}]")

    @property
    def unit(self) -> Granularity:
        """The :class:`~espnet_omni.sparsity.granularity.Granularity` object of :attr:`granularity`."""
        return REGISTRY[self.granularity]

    @property
    def nm_sparsity(self) -> float:
        """The sparsity that gives exactly ``n`` of every ``m`` weights."""
        return 1.0 - self.n / self.m

    def to_dict(self) -> dict:
        """Plain dict for YAML (``block`` as a list)."""
        d = asdict(self)
        d["block"] = list(self.block)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "MaskSpec":
        """Inverse of :meth:`to_dict`; unknown keys raise naming the valid ones."""
        valid = ("granularity", "block", "n", "m")
        unknown = sorted(set(d) - set(valid))
        if unknown:
            raise ValueError(f"unknown MaskSpec keys {unknown}; valid keys: {valid}")
        return cls(**d)


def check_sparsity(sparsity: float, name: str = "sparsity") -> float:
    """Return ``sparsity`` as float if it lies in ``[0, 1)``, else raise.

    >>> check_sparsity(1.0)
    Traceback (most recent call last):
    ...
    ValueError: sparsity=1.0 is outside the valid range [0, 1)
    """
    s = float(sparsity)
    if not 0.0 <= s < 1.0:  # also rejects NaN
        raise ValueError(f"{name}={sparsity!r} is outside the valid range [0, 1)")
    return s


def keep_count(sparsity: float, units: int) -> int:
    """Units kept at ``sparsity``: ``round_half_up((1 - s) * units)``.

    The product is first rounded to 9 decimals so that float noise such as
    ``(1 - 0.3) * 5 = 3.4999999999999996`` rounds like the exact 3.5.

    >>> [keep_count(s, 10) for s in (0.0, 0.1, 0.5, 0.9, 0.96)]
    [10, 9, 5, 1, 0]
    >>> keep_count(0.3, 5), keep_count(0.5, 5)
    (4, 3)
    """
    s = check_sparsity(sparsity)
    return int(math.floor(round((1.0 - s) * units, 9) + 0.5))


def _as_matrix_shape(shape: Sequence[int]) -> tuple[int, int]:
    if len(shape) < 2:
        raise ValueError(f"a prunable weight needs >= 2 dims, got shape {tuple(shape)}")
    return int(shape[0]), int(math.prod(shape[1:]))


def check_shape(shape: Sequence[int], spec: MaskSpec) -> None:
    """Raise if ``spec`` cannot tile a weight of ``shape`` (names both).

    >>> check_shape((6, 8), MaskSpec("block", block=(4, 4)))
    Traceback (most recent call last):
    ...
    ValueError: block (4, 4) does not divide weight (6, 8) viewed as matrix (6, 8)
    """
    rows, cols = _as_matrix_shape(shape)
    spec.unit.check_shape(rows, cols, tuple(shape), spec)


def num_units(shape: Sequence[int], spec: MaskSpec) -> int:
    """Units that :func:`keep_count` counts over (per group for ``nm``).

    >>> shape = (8, 16)
    >>> [num_units(shape, MaskSpec(g)) for g in ("unstructured", "block", "row")]
    [128, 32, 8]
    """
    check_shape(shape, spec)
    rows, cols = _as_matrix_shape(shape)
    return spec.unit.num_units(rows, cols, spec)


def unit_size(shape: Sequence[int], spec: MaskSpec) -> int:
    """Weights per unit (per group for ``nm``: ``units * unit_size * groups``).

    >>> unit_size((8, 16), MaskSpec("row")), unit_size((8, 16), MaskSpec("nm"))
    (16, 1)
    """
    rows, cols = _as_matrix_shape(shape)
    return spec.unit.unit_size(rows, cols, spec)


def kept_weights(shape: Sequence[int], spec: MaskSpec, sparsity: float) -> int:
    """Weights a mask keeps at ``sparsity``, computed without any tensor.

    >>> kept_weights((8, 16), MaskSpec("nm", m=4), 0.5)
    64
    >>> kept_weights((8, 16), MaskSpec("row"), 0.3)
    96
    """
    rows, cols = _as_matrix_shape(shape)
    return keep_count(sparsity, num_units(shape, spec)) * unit_size(shape, spec) * spec.unit.groups(rows, cols, spec)


@torch.no_grad()
def unit_ranks(weight: torch.Tensor, spec: MaskSpec) -> torch.Tensor:
    """Per-element rank of the element's unit; ``int32``, ``weight.shape``.

    Rank 0 is the highest score. For ``nm`` the rank counts inside the
    element's group of ``m`` (so it lies in ``[0, m)``).

    >>> w = torch.tensor([[4.0, -1.0, 2.0, 0.5], [0.1, 0.2, -3.0, 1.0]])
    >>> unit_ranks(w, MaskSpec("unstructured")).tolist()
    [[0, 3, 2, 5], [7, 6, 1, 4]]
    >>> unit_ranks(w, MaskSpec("row")).tolist()
    [[0, 0, 0, 0], [1, 1, 1, 1]]
    >>> unit_ranks(w, MaskSpec("nm", m=2)).tolist()
    [[0, 1, 0, 1], [1, 0, 0, 1]]
    """
    check_shape(weight.shape, spec)
    rows, cols = _as_matrix_shape(weight.shape)
    w = weight.detach().reshape(rows, cols).float()  # (out, in)
    ranks = spec.unit.ranks(w, spec)
    return ranks.reshape(weight.shape).contiguous()


def mask_at(ranks: torch.Tensor, spec: MaskSpec, sparsity: float) -> torch.Tensor:
    """Bool mask (``ranks.shape``) keeping ``keep(sparsity)`` units.

    >>> r = unit_ranks(torch.tensor([[4.0, -1.0, 2.0, 0.5]]), MaskSpec())
    >>> mask_at(r, MaskSpec(), 0.5).tolist()
    [[True, False, True, False]]
    """
    return ranks < keep_count(sparsity, num_units(ranks.shape, spec))


def nested_masks(
    weight: torch.Tensor, spec: MaskSpec, sparsities: Sequence[float]
) -> torch.Tensor:
    """Masks at several sparsities from one sort: ``(S, *weight.shape)`` bool.

    >>> m = nested_masks(torch.arange(8.0).reshape(2, 4), MaskSpec(), [0.0, 0.5, 0.75])
    >>> m.sum(dim=(1, 2)).tolist()
    [8, 4, 2]
    """
    ranks = unit_ranks(weight, spec)
    units = num_units(weight.shape, spec)
    keeps = [keep_count(s, units) for s in sparsities]
    keeps = torch.tensor(keeps, dtype=torch.int32, device=ranks.device)  # (S,)
    keeps = keeps.reshape(-1, *([1] * ranks.dim()))  # (S, 1, ..., 1)
    return ranks.unsqueeze(0) < keeps


def achieved_sparsity(mask: torch.Tensor) -> float:
    """Fraction of ``False`` entries in ``mask``.

    >>> achieved_sparsity(torch.tensor([True, False, False, True]))
    0.5
    """
    return 1.0 - int(mask.sum()) / mask.numel()
