"""Bytes a pruned weight takes on disk, by storage format (a cost model).

Used as a search budget and to predict export sizes before exporting.
Formats, for a weight viewed as ``(rows, cols)`` keeping ``k`` weights:

* ``dense``: every weight, ``rows * cols * b``.
* ``bitmask``: kept values plus one bit per weight, ``k * b + ceil(rows*cols/8)``.
* ``compressed``: the granularity's own format:
  ``unstructured`` CSR (values, a column index per value, row pointers);
  ``block`` BSR (the same per ``(bh, bw)`` tile);
  ``nm`` kept values plus ``ceil(log2 m)`` bits of position per value;
  ``row`` the physically smaller matrix plus one index per kept row.
* ``auto``: the smallest of the three (so ``dense`` at sparsity 0).

Indices take 2 bytes when they fit in 16 bits, else 4; row pointers 4.
"""

from __future__ import annotations

import math
from typing import Sequence

from espnet_omni.sparsity.masks import MaskSpec, keep_count, kept_weights, num_units

STORAGES = ("dense", "bitmask", "compressed", "auto")


def _compressed(shape: Sequence[int], spec: MaskSpec, sparsity: float, b: int) -> int:
    rows = int(shape[0])
    cols = math.prod(int(d) for d in shape[1:])
    kept_units = keep_count(sparsity, num_units(shape, spec))
    return spec.unit.compressed_bytes(rows, cols, spec, kept_weights(shape, spec, sparsity), kept_units, b)


def weight_storage_bytes(
    shape: Sequence[int],
    spec: MaskSpec,
    sparsity: float,
    dtype_bytes: int = 4,
    storage: str = "auto",
) -> int:
    """Bytes of one weight of ``shape`` pruned to ``sparsity`` (no bias).

    >>> spec = MaskSpec("unstructured")
    >>> [weight_storage_bytes((4, 8), spec, s) for s in (0.0, 0.75)]
    [128, 36]
    >>> weight_storage_bytes((4, 8), MaskSpec("row"), 0.5)
    68
    >>> weight_storage_bytes((4, 8), spec, 0.5, storage="zip")
    Traceback (most recent call last):
    ...
    ValueError: storage='zip' is not one of ('dense', 'bitmask', 'compressed', 'auto')
    """
    if storage not in STORAGES:
        raise ValueError(f"storage={storage!r} is not one of {STORAGES}")
    if dtype_bytes < 1:
        raise ValueError(f"dtype_bytes={dtype_bytes} must be >= 1")
    numel = math.prod(int(d) for d in shape)
    dense = numel * dtype_bytes
    if storage == "dense":
        return dense
    bitmask = kept_weights(shape, spec, sparsity) * dtype_bytes + math.ceil(numel / 8)
    if storage == "bitmask":
        return bitmask
    compressed = _compressed(shape, spec, sparsity, dtype_bytes)
    if storage == "compressed":
        return compressed
    return min(dense, bitmask, compressed)
