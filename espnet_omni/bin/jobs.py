"""``--jobs FILE``: several command lines of one decoder run in one process.

ESPnet's imports take seconds per process; a recipe that decodes many models (run.sh stage 10:
every Pareto model, full-context, streaming and chunk by chunk) writes one shell-quoted command
line per model into a file and starts the decoder once (``local/recipe_lib.sh``: decode_batch,
decode_flush).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Callable, Optional


def read_jobs(path: str) -> list[list[str]]:
    """The command lines of a ``--jobs`` file (shell-quoted, one per line; blank lines skipped);
    exits naming the file and line on a line that does not parse."""
    jobs = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise SystemExit(f"error: --jobs {path}: {e.strerror}")
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            args = shlex.split(line)
        except ValueError as e:
            raise SystemExit(f"error: --jobs {path}:{lineno}: {e}; expected one shell-quoted command line")
        if "--jobs" in args:
            raise SystemExit(f"error: --jobs {path}:{lineno}: a job cannot hold --jobs")
        jobs.append(args)
    return jobs


def jobs_file(cmd: list[str]) -> Optional[str]:
    """The FILE of ``--jobs FILE`` in ``cmd`` (None without it); exits when other options come
    with it (each line holds all of its job's options)."""
    if "--jobs" not in cmd:
        return None
    i = cmd.index("--jobs")
    if i + 1 >= len(cmd):
        raise SystemExit("error: --jobs needs a file of command lines")
    rest = cmd[:i] + cmd[i + 2:]
    if rest:
        raise SystemExit(f"error: --jobs gives every option per line; drop {' '.join(rest)}")
    return cmd[i + 1]


def run_jobs(cmd: list[str], main: Callable[[list[str]], object]) -> bool:
    """With ``--jobs FILE`` in ``cmd``: run ``main`` on each of its command lines and return True;
    without it, False (the caller decodes ``cmd`` itself)."""
    jobs = jobs_file(cmd)
    if jobs is None:
        return False
    for job in read_jobs(jobs):
        main(job)
    return True
