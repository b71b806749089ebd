"""A candidate's encoder cost, from per-group sums: the search's cheap cost model.

:class:`CostTable` is what :mod:`espnet_omni.search.subnet_search` repairs and ranks
candidates with; :func:`build_cost_table` tabulates parameters or bytes from a supernet's
masked layers, :func:`espnet_omni.search.latency_table.latency_cost_table` measured ms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from espnet_omni.nets.omni_conformer import OmniConformerEncoder
from espnet_omni.sparsity.groups import owned_parameters
from espnet_omni.sparsity.storage import STORAGES
from espnet_omni.sparsity.subnet import SearchSpace

BUDGET_UNITS = ("fraction", "params", "bytes", "ms")


@dataclass
class CostTable:
    """Encoder cost of a candidate from precomputed per-group sums.

    ``cost(c) = (base + sum_g table[g][c[g]]) / scale`` where ``base`` counts
    every encoder parameter outside the masked weights (biases included:
    they stay dense) and ``table[g][s]`` the masked weights of group ``g``
    at sparsity ``s``, both as the encoder's own ``active_nonzero_params()``
    (``params``, ``fraction``) or ``active_size_bytes()`` (``bytes``) count
    them; ``scale`` is the dense total for ``fraction``, else 1.

    Attributes:
        unit: one of :data:`BUDGET_UNITS`.
        names: dimension (tie group) names.
        table: per dimension, sparsity -> integer params or bytes.
        base: integer cost outside the masked weights.
        scale: divisor (dense total for ``fraction``).
        dense: the dense encoder's integer params (or bytes).
    """

    unit: str
    names: list[str]
    table: list[dict[float, int]]
    base: int
    scale: float
    dense: int

    def raw(self, candidate: Sequence[float]) -> int:
        """Integer params (or bytes) of ``candidate``."""
        return self.base + sum(t[float(s)] for t, s in zip(self.table, candidate))

    def __call__(self, candidate: Sequence[float]) -> float:
        return self.raw(candidate) / self.scale


def build_cost_table(
    encoder: OmniConformerEncoder,
    space: SearchSpace,
    unit: str = "fraction",
    *,
    storage: str = "auto",
    dtype_bytes: int = 4,
) -> CostTable:
    """Tabulate the cost of every group at every allowed sparsity.

    Uses the masked layers' own ``nonzero_params()`` / ``size_bytes()``
    (their sparsity is set and restored), so a candidate's cost equals the
    encoder's ``active_nonzero_params()`` / ``active_size_bytes()`` with
    that sub-network active.
    """
    if unit not in BUDGET_UNITS:
        raise ValueError(f"budget unit {unit!r} is not one of {BUDGET_UNITS}")
    if storage not in STORAGES:
        raise ValueError(f"storage={storage!r} is not one of {STORAGES}")

    def measure(layer) -> int:
        if unit == "bytes":
            return layer.size_bytes(dtype_bytes, storage)
        return layer.nonzero_params()

    layers = {n: encoder.get_submodule(n) for n in space.layers}
    inside = {id(p) for m in layers.values() for p in owned_parameters(m)}
    rest = sum(p.numel() for p in encoder.parameters() if id(p) not in inside)
    base = rest * dtype_bytes if unit == "bytes" else rest
    groups = space.groups()
    table: list[dict[float, int]] = []
    previous = {n: m.sparsity for n, m in layers.items()}
    try:
        for members in groups.values():
            row = {}
            for s in space.group_choices(members):
                for n in members:
                    layers[n].sparsity = s
                row[s] = sum(measure(layers[n]) for n in members)
            table.append(row)
        for m in layers.values():
            m.sparsity = 0.0
        dense = base + sum(measure(m) for m in layers.values())
    finally:
        for n, m in layers.items():
            m.sparsity = previous[n]
    scale = float(dense) if unit == "fraction" else 1.0
    return CostTable(unit, list(groups), table, base, scale, dense)
