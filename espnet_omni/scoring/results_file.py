"""Keep machine-written sections of a markdown results file.

Each section sits between `<!-- BEGIN name -->` and `<!-- END name -->`; rewriting
one section keeps every other line of the file as it was.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "R.md"
>>> replace_section(p, "a", "x\\n"); replace_section(p, "b", "y\\n"); replace_section(p, "a", "z\\n")
>>> print(p.read_text(), end="")
# Results
<BLANKLINE>
<!-- BEGIN a -->
z
<!-- END a -->
<BLANKLINE>
<!-- BEGIN b -->
y
<!-- END b -->
"""

from __future__ import annotations

import os
from pathlib import Path

HEADER = "# Results\n"


def replace_section(path: Path, name: str, body: str) -> None:
    """Write `body` as section `name` of `path` (created with a header if missing)."""
    path = Path(path)
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{body.rstrip()}\n{end}\n"
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    if begin in text:
        if end not in text:
            raise ValueError(f"{path}: section {name!r} has a BEGIN marker but no END marker")
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        text = head + block + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
