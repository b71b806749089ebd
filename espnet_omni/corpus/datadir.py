"""Read, write and validate Kaldi-style data directories.

A data directory holds one ``<utt-id> <value>`` line per utterance in each of:

* ``wav.scp``          : audio path (absolute, or relative to the working dir)
* ``text``             : transcript (normalized: ``a-z``, ``'``, single spaces)
* ``utt2spk``          : speaker id
* ``spk2utt``          : derived from ``utt2spk`` on write
* ``utt2family``       : optional; ``espeak|flite|festival|librivox|<subset>``
* ``utt2num_samples``  : optional; written by ``format_data``

Files are written sorted by utterance id (``LC_ALL=C`` byte order, as Kaldi
and ESPnet expect).  Ids are what Kaldi's ``validate_data_dir.sh`` accepts: no
whitespace, each utterance id starts with its speaker id (``103-1240-0000`` of
speaker ``103-1240``, ``sp0.9-kal-000123`` of ``sp0.9-kal``), and sorting by
utterance also sorts by speaker.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Tuple, Type

REQUIRED_FILES = ("wav.scp", "text", "utt2spk")
OPTIONAL_FILES = ("utt2family", "utt2num_samples")
_SPEAKER_RE = re.compile(r"^\S+$")


class DataDirError(ValueError):
    """A data directory is malformed; the message names file, line and utterance."""


@dataclass
class KaldiMap:
    """One ``<key> <value>`` file: values and the 1-based line of each key.

    Attributes:
        path: the file it was read from (for messages), or ``None``.
        values: ``{key: value}``; ``value`` is ``""`` for a line with a key only.
        lines: ``{key: line number}``.
    """

    path: Optional[Path] = None
    values: Dict[str, str] = field(default_factory=dict)
    lines: Dict[str, int] = field(default_factory=dict)

    def where(self, key: str) -> str:
        """``"<path>:<line>"`` of ``key``, for error messages."""
        line = self.lines.get(key)
        return f"{self.path}:{line}" if line is not None else f"{self.path}"


def read_lines(path: Path, error: Type[Exception] = DataDirError) -> Iterator[Tuple[int, str]]:
    """``(line number, line)`` of a UTF-8 text file, the line ending stripped.

    The one reader of the corpus's text files (``text``, ``wav.scp``,
    ``utt2spk``, transcripts, LM text).  Raises ``error`` naming the file,
    the line and the byte when a line is not UTF-8 (a Latin-1 transcript, a
    binary file listed by mistake).
    """
    with Path(path).open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise error(
                    f"{path}:{lineno}: not UTF-8 (byte {raw[e.start]:#04x} at byte {e.start + 1} "
                    f"of the line: {e.reason}); expected UTF-8 text (convert the file, e.g. "
                    f"iconv -f latin1 -t utf-8)"
                ) from None
            yield lineno, line.rstrip("\r\n")


def read_kaldi_map(path: Path) -> KaldiMap:
    """Read a ``<key> <value>`` file; blank lines are skipped.

    Raises :class:`DataDirError` on a missing file, a line that is not UTF-8
    (:func:`read_lines`) or a duplicated key.
    """
    path = Path(path)
    if not path.is_file():
        raise DataDirError(f"{path}: file not found")
    out = KaldiMap(path=path)
    for lineno, line in read_lines(path):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        key = parts[0]
        if key in out.values:
            raise DataDirError(
                f"{path}:{lineno}: duplicate key {key!r} (first at line "
                f"{out.lines[key]}); expected each utterance once"
            )
        out.values[key] = parts[1].strip() if len(parts) > 1 else ""
        out.lines[key] = lineno
    return out


def read_kv(path: Path) -> Dict[str, str]:
    """``utt -> value`` of a Kaldi ``<key> <value>`` file (:func:`read_kaldi_map`'s values): the
    one reader of ``text``, ``wav.scp``, ``utt2spk``, hypotheses; a value may be empty."""
    return read_kaldi_map(path).values


def write_kaldi_map(path: Path, values: Dict[str, object]) -> None:
    """Write ``values`` sorted by key; atomic (temp file, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for key in sorted(values):
            f.write(f"{key} {values[key]}\n")
    os.replace(tmp, path)


@dataclass
class DataDir:
    """A Kaldi data directory in memory.

    Attributes:
        wav_scp, text, utt2spk: the required files.
        utt2family, utt2num_samples: optional (empty map when absent).
        path: where it was read from, or ``None``.
    """

    wav_scp: KaldiMap
    text: KaldiMap
    utt2spk: KaldiMap
    utt2family: KaldiMap = field(default_factory=KaldiMap)
    utt2num_samples: KaldiMap = field(default_factory=KaldiMap)
    path: Optional[Path] = None

    @classmethod
    def from_dicts(
        cls,
        wav_scp: Dict[str, str],
        text: Dict[str, str],
        utt2spk: Dict[str, str],
        utt2family: Optional[Dict[str, str]] = None,
        utt2num_samples: Optional[Dict[str, int]] = None,
    ) -> "DataDir":
        """Build from plain ``{utt: value}`` dicts (no line numbers)."""

        def km(d: Optional[Dict]) -> KaldiMap:
            return KaldiMap(values={k: str(v) for k, v in (d or {}).items()})

        return cls(km(wav_scp), km(text), km(utt2spk), km(utt2family), km(utt2num_samples))

    @property
    def utts(self) -> List[str]:
        """Sorted utterance ids of ``wav.scp``."""
        return sorted(self.wav_scp.values)

    def spk2utt(self) -> Dict[str, str]:
        """``{speaker: "utt1 utt2 ..."}`` with utterances in sorted order."""
        groups: Dict[str, List[str]] = {}
        for utt in sorted(self.utt2spk.values):
            groups.setdefault(self.utt2spk.values[utt], []).append(utt)
        return {spk: " ".join(utts) for spk, utts in groups.items()}

    def subset(self, utts: Iterable[str]) -> "DataDir":
        """A new :class:`DataDir` restricted to ``utts`` (line numbers kept)."""
        keep = set(utts)

        def sub(m: KaldiMap) -> KaldiMap:
            vals = {k: v for k, v in m.values.items() if k in keep}
            return KaldiMap(m.path, vals, {k: m.lines[k] for k in vals if k in m.lines})

        return DataDir(
            sub(self.wav_scp), sub(self.text), sub(self.utt2spk),
            sub(self.utt2family), sub(self.utt2num_samples), self.path,
        )  # fmt: skip

    def validate(self, require_speaker_prefix: bool = True) -> None:
        """Check that all files list the same utterances and ids are Kaldi-safe.

        Raises :class:`DataDirError` naming the file, line and utterance.
        """
        maps = [("wav.scp", self.wav_scp), ("text", self.text), ("utt2spk", self.utt2spk)]
        maps += [(n, m) for n, m in (("utt2family", self.utt2family),
                                     ("utt2num_samples", self.utt2num_samples)) if m.values]
        ref = set(self.wav_scp.values)
        for name, m in maps[1:]:
            for utt in sorted(set(m.values) - ref):
                raise DataDirError(
                    f"{m.where(utt)}: utterance {utt!r} is in {name} but not in wav.scp; "
                    f"expected the same utterances in every file"
                )
            for utt in sorted(ref - set(m.values)):
                raise DataDirError(
                    f"{self.wav_scp.where(utt)}: utterance {utt!r} is in wav.scp but "
                    f"not in {name}; expected the same utterances in every file"
                )
        last = None
        for utt in sorted(self.utt2spk.values, key=lambda u: u.encode()):
            spk = self.utt2spk.values[utt]
            if not _SPEAKER_RE.match(spk):
                raise DataDirError(
                    f"{self.utt2spk.where(utt)}: speaker id {spk!r} of {utt!r}: "
                    f"expected no whitespace"
                )
            if not require_speaker_prefix:
                continue
            if not utt.startswith(spk):
                raise DataDirError(
                    f"{self.utt2spk.where(utt)}: utterance {utt!r} does not start with "
                    f"its speaker id {spk!r} (Kaldi sort order)"
                )
            if last is not None and spk.encode() < last[1].encode():
                raise DataDirError(
                    f"{self.utt2spk.where(utt)}: utterance {utt!r} of speaker {spk!r} sorts "
                    f"after {last[0]!r} of speaker {last[1]!r}: sorting by utterance must "
                    f"also sort by speaker (Kaldi's validate_data_dir.sh)"
                )
            last = (utt, spk)


def read_datadir(path: Path) -> DataDir:
    """Read a data directory (required files must exist; optional may not)."""
    path = Path(path)
    if not path.is_dir():
        raise DataDirError(f"{path}: data directory not found")
    maps = {name: read_kaldi_map(path / name) for name in REQUIRED_FILES}
    for name in OPTIONAL_FILES:
        maps[name] = read_kaldi_map(path / name) if (path / name).is_file() else KaldiMap()
    return DataDir(
        wav_scp=maps["wav.scp"],
        text=maps["text"],
        utt2spk=maps["utt2spk"],
        utt2family=maps["utt2family"],
        utt2num_samples=maps["utt2num_samples"],
        path=path,
    )


def write_datadir(d: DataDir, path: Path) -> None:
    """Write ``d`` (required files, ``spk2utt``, non-empty optional files).

    Optional files that ``d`` lacks are removed from ``path`` so a rewritten
    directory never holds a stale ``utt2num_samples``.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    write_kaldi_map(path / "wav.scp", d.wav_scp.values)
    write_kaldi_map(path / "text", d.text.values)
    write_kaldi_map(path / "utt2spk", d.utt2spk.values)
    write_kaldi_map(path / "spk2utt", d.spk2utt())
    for name, m in (("utt2family", d.utt2family), ("utt2num_samples", d.utt2num_samples)):
        if m.values:
            write_kaldi_map(path / name, m.values)
        elif (path / name).exists():
            (path / name).unlink()


def combine(dirs: List[DataDir]) -> DataDir:
    """Union of data directories; an utterance id in two of them is an error."""
    out = DataDir.from_dicts({}, {}, {})
    names = ("wav_scp", "text", "utt2spk", "utt2family", "utt2num_samples")
    for d in dirs:
        for utt in d.wav_scp.values:
            if utt in out.wav_scp.values:
                raise DataDirError(
                    f"{d.wav_scp.where(utt)}: utterance {utt!r} is also in an earlier "
                    f"directory; expected disjoint directories"
                )
        for name in names:
            getattr(out, name).values.update(getattr(d, name).values)
    return out

