"""What the table scripts read from an experiment directory, in one place.

``local/table_a.py``, ``local/table_b.py``, ``local/ablation.py`` and
:mod:`espnet_omni.scoring.ssl_summary` read the same files: ``scores.json`` of a
decode (``espnet_omni.scoring.score``), ESPnet's ``train.log`` (epoch wall
times), ``compute.json`` and ``config.yaml`` of a training, the decode's
``wall_seconds``, and the decoded texts of two systems (their paired bootstrap).
A missing file stops the script with the file named and the stage to run.

What they (and ``espnet_omni.scoring.score``, ``bench/*.py``) write names paths
relative to the repository root, the recipe directory (:func:`rel`,
:func:`rel_text`): no machine path (``/work/...``, ``/tmp/...``) in RESULTS.md
or a bench result.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
from pathlib import Path

UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
# The repository root = the recipe directory (run.sh's directory), as the scripts see it:
# not resolved, so a checkout reached through a link keeps its links (base/ -> ../abl/base).
ROOT = Path(os.path.abspath(__file__)).parents[2]
# An absolute path inside free text (a command line, a sentence): at the start, after a space,
# quote, backtick, bracket, `=` (--opt=/p, LABEL=/p) or `:`, a `/` not followed by another `/`
# (no URL), up to a space, quote, backtick, backslash (a shell-escaped space), `,`, `;`, `:`
# or a closing bracket.
ABS_PATH = re.compile(r"""(?<![^\s`'"(\[=:])/(?!/)[^\s`'"\\,;:)\]]+""")


def rel(path, root: Path | None = None) -> str:
    """``path`` relative to the repository root (``root``): ``.`` for the root itself,
    ``../gpu`` for a sibling checkout; a relative path is taken from the working directory.

    >>> rel(ROOT / "exp" / "asr_ctc"), rel(ROOT), rel("/w/gpu/exp", root=Path("/w/main"))
    ('exp/asr_ctc', '.', '../gpu/exp')
    """
    root = Path(ROOT if root is None else root)
    out = os.path.relpath(os.path.abspath(path), root)
    if out.startswith(".."):  # the root or the path reached through a link: compare real paths
        real = os.path.relpath(os.path.realpath(path), os.path.realpath(root))
        if not real.startswith(".."):
            return real
    return out


def rel_text(text: str, root: Path | None = None) -> str:
    r"""Every absolute path in ``text`` (a command line, a sentence) made relative to the
    repository root with :func:`rel`; nothing else changes.

    >>> print(rel_text("./run.sh --dir /w/main --also v2=/w/main/exp/a\\ v1=/w/gpu/exp/b --results_file "
    ...                "/w/main/RESULTS.md", root=Path("/w/main")))
    ./run.sh --dir . --also v2=exp/a\ v1=../gpu/exp/b --results_file RESULTS.md
    >>> rel_text("see https://x.org/a, 1 / (1 + k), sub/del/ins and `/w/main/exp`", root=Path("/w/main"))
    'see https://x.org/a, 1 / (1 + k), sub/del/ins and `exp`'
    """
    return ABS_PATH.sub(lambda m: rel(m.group(0), root), text)


class MissingOutput(SystemExit):
    """A file a table needs is not there (exits with the file named)."""


def load_text(path: Path, who: str = "table") -> str:
    if not Path(path).is_file():
        raise MissingOutput(f"{who}: missing {path} (run the stage that writes it first)")
    return Path(path).read_text()


def load_json(path: Path, who: str = "table") -> dict:
    return json.loads(load_text(path, who))


def load_yaml(path: Path, who: str = "table") -> dict:
    import yaml

    return yaml.safe_load(load_text(path, who))


def wer_percent(scores: dict, s: str) -> float:
    """Word error rate in % of set ``s`` in a ``scores.json`` (espnet_omni.scoring.score); NaN when
    the set was not scored."""
    return 100 * scores["scores"][s]["words"]["wer"] if s in scores["scores"] else math.nan


def ngpu(exp: Path, who: str = "table") -> int:
    """GPUs ``exp`` trained on (``ngpu`` in its config.yaml)."""
    return int(load_yaml(Path(exp) / "config.yaml", who).get("ngpu") or 0)


def compute_str(exp: Path, who: str = "table") -> str:
    """Training compute of ``exp``: CPU core-seconds, or GPU wall seconds when it trained on GPUs."""
    comp = load_json(Path(exp) / "compute.json", who)
    gpus = ngpu(exp, who)
    if gpus > 0:
        return f"{comp['train_wall_seconds_epochs']:.0f} GPU-s ({gpus} GPU)"
    return f"{comp['train_cpu_seconds']:.0f} CPU-s"


def significance(ref: Path, a: Path, b: Path, who: str = "table") -> str:
    """``difference ... 95% CI ...: (not) significant`` of WER(a) - WER(b), paired bootstrap over the
    utterances of the texts of two decodes against the references ``ref``."""
    from espnet_omni.corpus.datadir import read_kv
    from espnet_omni.scoring.wer import bootstrap_summary, paired_bootstrap

    for f in (ref, a, b):
        load_text(f, who)  # a missing file: stop, naming it
    return bootstrap_summary(paired_bootstrap(read_kv(ref), read_kv(a), read_kv(b)))


def timespan(text: str) -> float:
    """humanfriendly's ``format_timespan`` text (ESPnet's epoch times) -> seconds.

    >>> timespan("1 hour, 2 minutes and 3.5 seconds"), timespan("58.2 seconds")
    (3723.5, 58.2)
    """
    parts = re.findall(r"([\d.]+) (second|minute|hour|day)s?", text)
    if not parts:
        raise ValueError(f"not a time span: {text!r}")
    return sum(float(n) * UNITS[u] for n, u in parts)


def epoch_seconds(exp: Path, who: str = "table") -> dict[int, float]:
    """Training wall seconds per epoch, from ESPnet's ``Nepoch results: [train] ... time=...``
    lines of train.log (the last line of an epoch counts if a resume repeated it)."""
    out = {}
    for m in re.finditer(r"(\d+)epoch results: \[train\](.*?)\[valid\]", load_text(exp / "train.log", who)):
        t = re.search(r"(?<![a-z_])time=([^,]+)", m.group(2))
        if t:
            out[int(m.group(1))] = timespan(t.group(1))
    if not out:
        raise MissingOutput(f"{who}: {exp / 'train.log'} has no 'Nepoch results' line with a train time")
    return out


def median_epochs(exp: Path, who: str = "table") -> float:
    """Median epoch wall time x epochs: the run's length with each epoch at the median
    epoch's speed, so epochs slowed by other jobs on the machine do not count."""
    e = epoch_seconds(exp, who)
    return statistics.median(e.values()) * len(e)


def audio_seconds(data_dir: Path, fs: int = 16000) -> float:
    """Total audio of a formatted data dir (its ``utt2num_samples``)."""
    text = load_text(Path(data_dir) / "utt2num_samples")
    return sum(int(line.split()[1]) for line in text.splitlines() if line.strip()) / fs


def decode_rtf(set_dir: Path, data_dir: Path) -> float:
    """Real-time factor per decoding thread of one decoded set: wall seconds x parallel
    jobs (one thread each, ``logdir/keys.*``) / audio seconds; model loading included."""
    wall = float(load_text(Path(set_dir) / "wall_seconds").split()[0])
    jobs = len(list((Path(set_dir) / "logdir").glob("keys.*"))) or 1
    return wall * jobs / audio_seconds(data_dir)


def verdict_sets(sets: list[str]) -> list[str]:
    """The sets every claim of a table is decided on: test (held-out voices) and test_seen (the
    training voices) where scored; otherwise the second set (the first is the valid set) or the
    only one.

    >>> verdict_sets(["dev", "test", "test_seen", "real"]), verdict_sets(["dev", "x"]), verdict_sets(["test"])
    (['test', 'test_seen'], ['x'], ['test'])
    """
    found = [s for s in ("test", "test_seen") if s in sets]
    return found or [sets[1] if len(sets) > 1 else sets[0]]
