"""Check a Kaldi data directory utterance by utterance and write a clean copy.

Usage:
    python -m espnet_omni.corpus.format_data --in data/train --out dump/raw/train
    python -m espnet_omni.corpus.format_data --in data/train --out dump/raw/train \\
        --min_sec 0.5 --max_sec 20 --on_error drop

Checks, per utterance: an entry in wav.scp, text and utt2spk; a wav path that
exists, opens (soundfile: wav, flac, ...), has samples, one channel and the
expected sample rate, is complete (a WAV data chunk holds the bytes its header
declares, another format's last frame reads) and, for float files, holds no
NaN or inf (:func:`espnet_omni.corpus.audio_check.audio_problem`); a
non-empty transcript.  With ``--on_error fail`` (the default) the first
problem stops the run with a message naming the data-dir file, its line, the
utterance and what was expected (exit code 1); with ``drop`` bad utterances
are dropped and counted per reason.  Only when ``--min_sec`` / ``--max_sec``
are given (the training data; never an evaluation set, whose score must cover
all of it) are utterances outside them dropped, with a warning that counts
them.  Writes ``wav.scp text utt2spk spk2utt [utt2family] utt2num_samples``
to ``--out``.
"""

from __future__ import annotations

import argparse
import collections
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import soundfile as sf
from tqdm import tqdm

from espnet_omni.corpus.audio_check import audio_problem
from espnet_omni.corpus.datadir import DataDir, DataDirError, read_datadir, write_datadir

logger = logging.getLogger(__name__)

ON_ERROR = ("fail", "drop")


@dataclass(frozen=True)
class FormatConfig:
    """What ``format_data`` accepts.

    Attributes:
        fs: expected sample rate in Hz.
        min_sec, max_sec: duration limits in seconds (outside: dropped);
            ``None`` (the default): no limit, every utterance is kept.  Give
            them for training data only, never for an evaluation set.
        on_error: ``fail`` (stop at the first bad utterance) or ``drop``.
    """

    fs: int = 16000
    min_sec: Optional[float] = None
    max_sec: Optional[float] = None
    on_error: str = "fail"

    def __post_init__(self) -> None:
        if self.on_error not in ON_ERROR:
            raise ValueError(f"on_error={self.on_error!r}, valid: {ON_ERROR}")
        lo = 0.0 if self.min_sec is None else self.min_sec
        hi = float("inf") if self.max_sec is None else self.max_sec
        if not 0 <= lo < hi:
            raise ValueError(
                f"need 0 <= min_sec < max_sec, got min_sec={self.min_sec}, "
                f"max_sec={self.max_sec}"
            )
        if self.fs <= 0:
            raise ValueError(f"fs must be > 0, got {self.fs}")


@dataclass(frozen=True)
class Problem:
    """One bad utterance: ``reason`` key and a message naming file:line."""

    utt: str
    reason: str
    message: str


def check_utterance(d: DataDir, utt: str, fs: int) -> Tuple[Optional[Problem], int]:
    """(problem or ``None``, number of samples) for one utterance."""
    def bad(reason: str, where: str, what: str) -> Tuple[Problem, int]:
        return Problem(utt, reason, f"{where}: utterance {utt!r}: {what}"), 0

    if utt not in d.wav_scp.values:
        return bad("no_wav_entry", d.text.where(utt),
                   "has a transcript but no line in wav.scp; expected one")  # fmt: skip
    where = d.wav_scp.where(utt)
    if utt not in d.text.values:
        return bad("no_text_entry", where, "is in wav.scp but has no line in text; expected one")
    if utt not in d.utt2spk.values:
        return bad("no_speaker", where, "is in wav.scp but has no line in utt2spk; expected one")
    if not d.text.values[utt].strip():
        return bad("empty_text", d.text.where(utt), "empty transcript; expected words")
    path = d.wav_scp.values[utt]
    if not path or path.endswith("|"):
        return bad("bad_path", where, f"{path!r}: expected an audio file path (no pipes)")
    if not Path(path).is_file():
        return bad("missing_file", where, f"{path} not found; expected an audio file")
    try:
        info = sf.info(path)
    except Exception as e:  # soundfile raises several types for unreadable files
        return bad("unreadable", where, f"{path} is unreadable ({e}); expected wav/flac audio")
    if info.frames <= 0:
        return bad("empty_audio", where, f"{path} has no samples; expected speech")
    if info.channels != 1:
        return bad("not_mono", where, f"{path} has {info.channels} channels; expected 1 (mono)")
    if info.samplerate != fs:
        return bad("sample_rate", where,
                   f"{path} is {info.samplerate} Hz; expected {fs} Hz")  # fmt: skip
    samples = audio_problem(path, info)
    if samples is not None:
        return bad(samples[0], where, samples[1])
    return None, int(info.frames)


def format_datadir(src: Path, dst: Path, cfg: FormatConfig = FormatConfig()) -> DataDir:
    """Check ``src`` and write the good utterances (+ ``utt2num_samples``) to ``dst``.

    Utterances outside ``cfg.min_sec``/``cfg.max_sec`` (when set) are dropped
    with a warning naming ``src`` and the counts.  Raises
    :class:`DataDirError` on the first problem when ``cfg.on_error`` is
    ``fail``, or when no utterance is left.
    """
    d = read_datadir(Path(src))
    utts = sorted(set(d.wav_scp.values) | set(d.text.values))
    problems: List[Problem] = []
    num_samples: Dict[str, int] = {}
    for utt in tqdm(utts, desc=f"check {src}", unit="utt", leave=False):
        problem, n = check_utterance(d, utt, cfg.fs)
        if problem is not None:
            problems.append(problem)
        else:
            num_samples[utt] = n
    if problems:
        counts = collections.Counter(p.reason for p in problems)
        if cfg.on_error == "fail":
            others = f" ({len(problems) - 1} more: {dict(counts)})" if len(problems) > 1 else ""
            raise DataDirError(
                f"{problems[0].message}{others}; fix the data or pass --on_error drop"
            )
        logger.warning("%s: dropped %d bad utterances: %s", src, len(problems), dict(counts))
    lo = 0 if cfg.min_sec is None else cfg.min_sec * cfg.fs
    hi = float("inf") if cfg.max_sec is None else cfg.max_sec * cfg.fs
    short = [u for u, n in num_samples.items() if n < lo]
    long_ = [u for u, n in num_samples.items() if n > hi]
    if short or long_:
        limits = [f"{len(short)} shorter than {cfg.min_sec:g} s"] if cfg.min_sec is not None else []
        limits += [f"{len(long_)} longer than {cfg.max_sec:g} s"] if cfg.max_sec is not None else []
        logger.warning(
            "%s: dropped %d of %d utterances by duration: %s (--min_sec/--max_sec: for "
            "training data only)", src, len(short) + len(long_), len(utts), ", ".join(limits),
        )  # fmt: skip
    keep = set(num_samples) - set(short) - set(long_)
    if not keep:
        raise DataDirError(f"{src}: no utterance left after checks and duration filter")
    out = d.subset(keep)
    out.utt2num_samples.values.update({u: str(num_samples[u]) for u in keep})
    out.validate(require_speaker_prefix=False)
    write_datadir(out, Path(dst))
    logger.info("%s: %d of %d utterances -> %s", src, len(keep), len(utts), dst)
    return out


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Check a Kaldi data dir and write a clean copy with utt2num_samples.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--in", dest="src", type=Path, required=True, help="data dir")
    parser.add_argument("--out", type=Path, required=True, help="output data dir")
    parser.add_argument("--fs", type=int, default=16000, help="expected sample rate (Hz)")
    parser.add_argument("--min_sec", type=float, default=None,
                        help="drop shorter utterances; training data only (None: keep all)")  # fmt: skip
    parser.add_argument("--max_sec", type=float, default=None,
                        help="drop longer utterances; training data only (None: keep all)")  # fmt: skip
    parser.add_argument("--on_error", choices=ON_ERROR, default="fail")
    return parser


def main(cmd: Optional[Sequence[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(message)s")
    try:
        cfg = FormatConfig(args.fs, args.min_sec, args.max_sec, args.on_error)
        format_datadir(args.src, args.out, cfg)
    except (DataDirError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
