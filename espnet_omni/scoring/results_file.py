"""Keep machine-written sections of a markdown results file.

Each section sits between `<!-- BEGIN name -->` and `<!-- END name -->`; rewriting
one section keeps every other line of the file as it was. A missing file starts with
HEADER: the title and the file's generic rule, nothing about any one run (a run's
provenance belongs in its own section: the table scripts' --note).

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "R.md"
>>> replace_section(p, "a", "x\\n"); replace_section(p, "b", "y\\n"); replace_section(p, "a", "z\\n")
>>> print(p.read_text(), end="")  # doctest: +ELLIPSIS
# Results
<BLANKLINE>
Every section below is written by a script from a real run ...
...
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

HEADER = """# Results

Every section below is written by a script from a real run (the command is in
each section); nothing here is typed by hand. `./run.sh` rewrites its own
section; other sections are kept. Paths are relative to the recipe directory
(the repository root). How a run was made (the machine, its load, what ran
where) is in its own section.
"""


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
