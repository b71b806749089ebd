"""Memoised evaluation of candidates, optionally persisted as JSON lines.

A candidate is a tuple of floats (one per-layer sparsity per dimension).
Scoring one on a dev set costs a decode, so every distinct candidate is
scored once; with a ``path`` every new score is appended to a JSON-lines file
at once, so an interrupted search that is run again with the same seed walks
the same trajectory and re-scores nothing it had already scored.

File format, one object per line (floats written with ``repr`` precision, so
they read back bit-exact)::

    {"candidate": [0.0, 0.5, 0.9], "score": 0.123}

The file is only valid for the score function that wrote it (same model, same
dev set, same proxy); keeping them matched is the caller's job. One process
at a time may append to a file.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

Candidate = tuple[float, ...]

logger = logging.getLogger(__name__)


def as_candidate(values: Sequence[float]) -> Candidate:
    """Normalise a sequence of numbers into the hashable candidate key.

    >>> as_candidate([0, 0.5])
    (0.0, 0.5)
    """
    return tuple(float(v) for v in values)


class ScoreCache:
    """Call ``fn`` at most once per distinct candidate.

    Args:
        fn: maps a candidate tuple to a float (lower is better for scores;
            the same class memoises the cost function).
        path: optional JSON-lines file; existing entries are loaded (a
            truncated last line, left by a killed process, is cut off with a
            warning) and every new value is appended and flushed.
        name: what the value is called in messages and in the file
            (``"score"`` or ``"cost"``).

    Attributes:
        n_evaluations: how many times ``fn`` was actually called by this
            object (entries loaded from ``path`` do not count).
    """

    def __init__(
        self,
        fn: Callable[[Candidate], float],
        path: str | os.PathLike | None = None,
        *,
        name: str = "score",
    ) -> None:
        self._fn = fn
        self.name = name
        self.path = None if path is None else Path(path)
        self.n_evaluations = 0
        self._values: dict[Candidate, float] = {}
        if self.path is not None and self.path.exists():
            self._load(self.path)

    # -- mapping-like read access ------------------------------------------
    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, candidate: Sequence[float]) -> bool:
        return as_candidate(candidate) in self._values

    def get(self, candidate: Sequence[float]) -> float | None:
        """The stored value, or None when ``candidate`` was never evaluated."""
        return self._values.get(as_candidate(candidate))

    def items(self) -> Iterator[tuple[Candidate, float]]:
        """(candidate, value) pairs in first-evaluation order."""
        return iter(list(self._values.items()))

    # -- evaluation ---------------------------------------------------------
    def __call__(self, candidate: Sequence[float]) -> float:
        """Return the cached value, calling ``fn`` only on a miss."""
        key = as_candidate(candidate)
        hit = self._values.get(key)
        if hit is not None:
            return hit
        value = float(self._fn(key))
        if math.isnan(value):
            raise ValueError(f"{self.name} function returned NaN for candidate {list(key)}")
        self.n_evaluations += 1
        self._values[key] = value
        if self.path is not None:
            self._append(key, value)
        return value

    # -- persistence --------------------------------------------------------
    def _append(self, key: Candidate, value: float) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"candidate": list(key), self.name: value})
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()

    def _load(self, path: Path) -> None:
        raw = path.read_bytes()
        lines = raw.split(b"\n")
        last_no = max((i for i, ln in enumerate(lines, start=1) if ln.strip()), default=0)
        offset = 0
        for line_no, line in enumerate(lines, start=1):
            start, offset = offset, offset + len(line) + 1
            if not line.strip():
                continue
            is_last = line_no == last_no
            try:
                entry = json.loads(line)
                key, value = self._parse(entry, path, line_no)
            except (ValueError, TypeError) as e:
                if not is_last:
                    raise ValueError(f"{path}:{line_no}: bad cache entry: {e}") from e
                # A process killed mid-write leaves a partial last line:
                # cut it off so appends start on a clean line.
                logger.warning("%s:%d: dropping truncated last line", path, line_no)
                with open(path, "r+b") as f:
                    f.truncate(start)
                break
            self._values.setdefault(key, value)
        else:
            if raw and not raw.endswith(b"\n"):
                with open(path, "ab") as f:
                    f.write(b"\n")
        logger.info("loaded %d cached %s values from %s", len(self._values), self.name, path)

    def _parse(self, entry: object, path: Path, line_no: int) -> tuple[Candidate, float]:
        keys = ("candidate", self.name)
        if not isinstance(entry, dict) or set(entry) != set(keys):
            raise ValueError(f"expected an object with exactly the keys {list(keys)}: {entry!r}")
        cand = entry["candidate"]
        if not isinstance(cand, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in cand
        ):
            raise ValueError(f"'candidate' must be a list of numbers, got {cand!r}")
        value = entry[self.name]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
            raise ValueError(f"{self.name!r} must be a number, got {value!r}")
        return as_candidate(cand), float(value)
