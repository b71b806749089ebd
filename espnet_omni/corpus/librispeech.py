"""Kaldi data directories from a local LibriSpeech copy.

Usage:
    python -m espnet_omni.corpus.librispeech --root downloads/LibriSpeech \\
        --out data dev-clean test-clean test-other
    python -m espnet_omni.corpus.librispeech --root downloads/LibriSpeech \\
        --out data --combine_as train_960 \\
        train-clean-100 train-clean-360 train-other-500

Reads ``<root>/<subset>/<spk>/<chapter>/<spk>-<chapter>.trans.txt`` and the
``<spk>-<chapter>-<utt>.flac`` files beside it.  Writes, per subset,
``<out>/<subset with - as _>/{wav.scp,text,utt2spk,spk2utt,utt2family}``
(family = subset name; wav.scp points at the .flac files, which soundfile
reads), or one directory ``<out>/<combine_as>`` holding all subsets.
Transcripts go through ``text.normalize_transcript``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from tqdm import tqdm

from espnet_omni.corpus.datadir import DataDir, DataDirError, combine, read_lines, write_datadir
from espnet_omni.corpus.text import normalize_transcript

logger = logging.getLogger(__name__)

KNOWN_SUBSETS = (
    "train-clean-100", "train-clean-360", "train-other-500",
    "dev-clean", "dev-other", "test-clean", "test-other",
)  # fmt: skip


def subset_dirname(subset: str) -> str:
    """``dev-clean`` -> ``dev_clean`` (ESPnet's data-dir naming)."""
    return subset.replace("-", "_")


def prepare_subset(root: Path, subset: str) -> DataDir:
    """Read one subset into a :class:`DataDir` (nothing written).

    Raises ``FileNotFoundError`` for a missing root/subset and
    :class:`DataDirError` for a malformed transcript line or a listed
    utterance without its .flac file.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"LibriSpeech root {root} not found; set LIBRISPEECH in db.sh or pass --root"
        )
    sub = root / subset
    if not sub.is_dir():
        have = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise FileNotFoundError(
            f"LibriSpeech subset {sub} not found; subsets under {root}: {have} "
            f"(known names: {list(KNOWN_SUBSETS)})"
        )
    wav_scp: Dict[str, str] = {}
    text: Dict[str, str] = {}
    utt2spk: Dict[str, str] = {}
    trans_files = sorted(sub.glob("*/*/*.trans.txt"))
    if not trans_files:
        raise FileNotFoundError(f"{sub}: no <spk>/<chapter>/*.trans.txt files")
    for trans in tqdm(trans_files, desc=subset, unit="chapter", leave=False):
        for lineno, line in read_lines(trans):
            if not line.strip():
                continue
            parts = line.split(maxsplit=1)
            utt = parts[0]
            if utt.count("-") != 2:
                raise DataDirError(
                    f"{trans}:{lineno}: utterance id {utt!r}: expected <spk>-<chapter>-<utt>"
                )
            flac = trans.parent / f"{utt}.flac"
            if not flac.is_file():
                raise DataDirError(f"{trans}:{lineno}: utterance {utt}: {flac} not found")
            wav_scp[utt] = str(flac.resolve())
            text[utt] = normalize_transcript(parts[1] if len(parts) > 1 else "")
            utt2spk[utt] = utt.split("-", 1)[0]
    d = DataDir.from_dicts(wav_scp, text, utt2spk, utt2family={u: subset for u in wav_scp})
    d.validate()
    return d


def prepare_librispeech(
    root: Path, subsets: Sequence[str], out: Path, combine_as: Optional[str] = None
) -> List[Path]:
    """Write one data dir per subset, or one for all when ``combine_as`` is set.

    Returns the directories written.
    """
    if not subsets:
        raise ValueError(f"no subsets given; known: {list(KNOWN_SUBSETS)}")
    dirs = [prepare_subset(root, s) for s in subsets]  # all checked before writing
    out = Path(out)
    written: List[Path] = []
    if combine_as:
        d = combine(dirs)
        write_datadir(d, out / combine_as)
        written.append(out / combine_as)
    else:
        for subset, d in zip(subsets, dirs, strict=True):
            write_datadir(d, out / subset_dirname(subset))
            written.append(out / subset_dirname(subset))
    for path in written:
        logger.info("wrote %s", path)
    return written


def main(cmd: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="LibriSpeech -> Kaldi data dirs.")
    parser.add_argument("subsets", nargs="+", help=f"e.g. {' '.join(KNOWN_SUBSETS)}")
    parser.add_argument("--root", type=Path, required=True, help="LibriSpeech root")
    parser.add_argument("--out", type=Path, default=Path("data"), help="output root")
    parser.add_argument("--combine_as", default=None, help="one dir for all subsets")
    args = parser.parse_args(cmd)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(message)s")
    try:
        prepare_librispeech(args.root, args.subsets, args.out, args.combine_as)
    except (FileNotFoundError, DataDirError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
