"""Strict YAML I/O shared by the sparsity config dataclasses.

Configs fail loudly: an unknown key raises naming the valid keys, so a typo
or a file written for another version never loads silently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import yaml


def check_keys(d: dict, valid: Iterable[str], what: str) -> None:
    """Raise ``ValueError`` if ``d`` has keys outside ``valid``.

    >>> check_keys({"a": 1, "zz": 2}, ("a", "b"), "Thing")
    Traceback (most recent call last):
    ...
    ValueError: unknown Thing keys ['zz']; valid keys: ['a', 'b']
    """
    if not isinstance(d, dict):
        raise ValueError(f"{what} must be a mapping, got {type(d).__name__}")
    valid = list(valid)
    unknown = sorted(set(d) - set(valid))
    if unknown:
        raise ValueError(f"unknown {what} keys {unknown}; valid keys: {valid}")


def dump_yaml(d: dict, path: str | Path | None = None) -> str:
    """YAML text of ``d`` (key order kept); also written to ``path`` if given."""
    text = yaml.safe_dump(d, sort_keys=False, default_flow_style=None)
    if path is not None:
        Path(path).write_text(text)
    return text


def load_yaml(source: str | Path) -> dict:
    """Mapping from a YAML file path (``Path``, or a str naming an existing
    ``.yaml``/``.yml`` file) or from YAML text; a missing file, YAML that does not
    parse or is not a mapping raises ``ValueError`` naming the file (and line)."""
    where = "YAML text"
    if isinstance(source, Path) or (
        isinstance(source, str)
        and "\n" not in source
        and source.endswith((".yaml", ".yml"))
    ):
        where = str(source)
        if not Path(source).is_file():
            raise ValueError(f"{where}: not found; expected a YAML file")
        source = Path(source).read_text()
    try:
        d = yaml.safe_load(source)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ValueError(f"{where}: not valid YAML{at} ({getattr(e, 'problem', None) or e})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a YAML mapping, got {type(d).__name__}")
    return d
