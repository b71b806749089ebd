"""Write search outputs: the Pareto front (CSV + YAML) and budget labels.

What it writes (``out_dir`` chosen by the caller)::

    front.csv            cost,score,<dim names...>   one row per front point
    front.yaml           {front: [{cost, score, sparsities: [...]}, ...]}

The best sub-network per budget is the caller's own config file
(:mod:`espnet_omni.search.subnet_search` writes ``subnet_<budget>.yaml``).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from espnet_omni.evolutionary_search.pareto import ParetoPoint



def _point(p: tuple) -> ParetoPoint:
    cost, score, candidate = p
    return ParetoPoint(float(cost), float(score), [float(v) for v in candidate])


def point_record(point: tuple, budget: float | None = None) -> dict[str, Any]:
    """A point as a plain YAML-safe mapping (``budget`` first when given).

    >>> point_record((10, 0.5, (0.0, 0.25)), budget=12)
    {'budget': 12.0, 'cost': 10.0, 'score': 0.5, 'sparsities': [0.0, 0.25]}
    """
    p = _point(point)
    rec: dict[str, Any] = {} if budget is None else {"budget": float(budget)}
    rec.update(cost=p.cost, score=p.score, sparsities=p.candidate)
    return rec


def _dim_names(names: Sequence[str] | None, n: int) -> list[str]:
    if names is None:
        return [f"s{i}" for i in range(n)]
    names = list(names)
    if len(names) != n:
        raise ValueError(f"names has {len(names)} entries but candidates have {n} dimensions")
    clash = {"cost", "score"} & set(names)
    if clash or len(set(names)) != n:
        raise ValueError(f"names must be distinct and not 'cost'/'score', got {names}")
    return names


def write_front_csv(
    front: Iterable[tuple], path: str | os.PathLike, names: Sequence[str] | None = None
) -> Path:
    """Write ``cost,score,<one column per dimension>``; returns the path.

    Args:
        front: (cost, score, candidate) points, e.g. from ``pareto_front``.
        path: output CSV.
        names: column name per dimension (e.g. layer names); ``s0, s1, ...``
            when None.
    """
    points = [_point(p) for p in front]
    dims = {len(p.candidate) for p in points}
    if len(dims) > 1:
        raise ValueError(f"candidates of different lengths {sorted(dims)} in one front")
    cols = _dim_names(names, dims.pop() if dims else len(names or []))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["cost", "score", *cols])
        for p in points:
            w.writerow([repr(p.cost), repr(p.score), *(repr(v) for v in p.candidate)])
    return path


def write_front_yaml(front: Iterable[tuple], path: str | os.PathLike) -> Path:
    """Write ``{front: [{cost, score, sparsities}, ...]}``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"front": [point_record(p) for p in front]}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def budget_label(budget: float) -> str:
    """File-name-safe label: integral budgets without a decimal point.

    >>> budget_label(2000000.0), budget_label(0.5)
    ('2000000', '0.5')
    """
    b = float(budget)
    return str(int(b)) if b.is_integer() else repr(b)

