"""Write search outputs: the Pareto front (CSV + YAML) and one YAML per budget.

What it writes (``out_dir`` chosen by the caller)::

    front.csv            cost,score,<dim names...>   one row per front point
    front.yaml           {front: [{cost, score, sparsities: [...]}, ...]}
    budget_<b>.yaml      {budget, cost, score, sparsities: [...]}

A budget file is a plain mapping: the caller turns ``sparsities`` (one float
per search dimension, in the search's dimension order) into its own
sub-network config. Readers validate keys and lengths.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from espnet_omni.evolutionary_search.pareto import ParetoPoint

_RECORD_KEYS = ("budget", "cost", "score", "sparsities")


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


def read_front_csv(path: str | os.PathLike) -> list[ParetoPoint]:
    """Read back :func:`write_front_csv` (candidates as float tuples)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0][:2] != ["cost", "score"]:
        raise ValueError(f"{path}: expected a header starting with cost,score")
    out = []
    for line_no, row in enumerate(rows[1:], start=2):
        if len(row) != len(rows[0]):
            raise ValueError(f"{path}:{line_no}: {len(row)} fields, header has {len(rows[0])}")
        vals = [float(v) for v in row]
        out.append(ParetoPoint(vals[0], vals[1], tuple(vals[2:])))
    return out


def write_front_yaml(front: Iterable[tuple], path: str | os.PathLike) -> Path:
    """Write ``{front: [{cost, score, sparsities}, ...]}``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"front": [point_record(p) for p in front]}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def write_budget_yaml(budget: float, point: tuple, path: str | os.PathLike) -> Path:
    """Write ``{budget, cost, score, sparsities}`` for one budget."""
    rec = point_record(point, budget)
    if rec["cost"] > rec["budget"]:
        raise ValueError(f"point cost {rec['cost']:g} exceeds its budget {rec['budget']:g}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(rec, sort_keys=False))
    return path


def budget_label(budget: float) -> str:
    """File-name-safe label: integral budgets without a decimal point.

    >>> budget_label(2000000.0), budget_label(0.5)
    ('2000000', '0.5')
    """
    b = float(budget)
    return str(int(b)) if b.is_integer() else repr(b)


def write_budget_yamls(
    best: Mapping[float, tuple], out_dir: str | os.PathLike, prefix: str = "budget_"
) -> dict[float, Path]:
    """One ``<prefix><label>.yaml`` per budget; returns budget -> path."""
    out_dir = Path(out_dir)
    return {
        float(b): write_budget_yaml(b, p, out_dir / f"{prefix}{budget_label(b)}.yaml")
        for b, p in best.items()
    }


def read_budget_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate one budget file; returns the plain mapping."""
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict) or set(data) != set(_RECORD_KEYS):
        got = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path}: expected exactly the keys {list(_RECORD_KEYS)}, got {got}")
    for key in ("budget", "cost", "score"):
        v = data[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
            raise ValueError(f"{path}: {key!r} must be a number, got {v!r}")
        data[key] = float(v)
    sp = data["sparsities"]
    if not isinstance(sp, list) or not sp or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v < 1.0 for v in sp
    ):
        raise ValueError(f"{path}: 'sparsities' must be a non-empty list of numbers in [0, 1)")
    data["sparsities"] = [float(v) for v in sp]
    return data
