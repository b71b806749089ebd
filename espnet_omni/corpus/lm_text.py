"""Language-model text: training sentences that no evaluation set contains.

Usage:
    python -m espnet_omni.corpus.lm_text --plain data/lm_pool.txt \
        --exclude dump/raw/dev/text dump/raw/test/text dump/raw/test_seen/text \
                  dump/raw/real/text --out data/lm/train.txt
    python -m espnet_omni.corpus.lm_text --kaldi dump/raw/train_clean_100/text \
        --exclude dump/raw/test_clean/text --out data/lm/train.txt     # LibriSpeech

Writes ``<out>``: ``lm<NNNNNNN> <sentence>`` lines (the key-value text ESPnet's
``lm_train`` reads with ``--train_data_path_and_name_and_type <out>,text,text``),
sorted and unique.  Dropped: every sentence of an ``--exclude`` set (Kaldi
``text`` files: the evaluation sets), and the reserved slice
(:func:`espnet_omni.corpus.text.is_reserved`), which nothing the recipe makes
may use.  Sentences are compared after :func:`normalize_transcript`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Set

from espnet_omni.corpus.datadir import read_lines
from espnet_omni.corpus.text import is_reserved, normalize_transcript

logger = logging.getLogger(__name__)


class LMTextError(ValueError):
    """A missing or unusable source of LM text."""


def _lines(path: Path) -> List[str]:
    """The lines of ``path``; :class:`LMTextError` when missing or not UTF-8."""
    if not path.is_file():
        raise LMTextError(f"{path}: LM text source not found")
    return [line for _, line in read_lines(path, LMTextError)]


def read_plain(path: Path) -> List[str]:
    """One sentence per line (blank lines skipped), normalized."""
    return [t for t in (normalize_transcript(line) for line in _lines(path)) if t]


def read_kaldi(path: Path) -> List[str]:
    """The transcripts of a Kaldi ``text`` file (``<utt> <words>``), normalized."""
    out = []
    for lineno, line in enumerate(_lines(path), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) < 2:
            raise LMTextError(f"{path}:{lineno}: expected '<utt-id> <words>', got {line!r}")
        t = normalize_transcript(parts[1])
        if t:
            out.append(t)
    return out


def make_lm_text(sentences: Iterable[str], exclude: Set[str]) -> List[str]:
    """Sorted unique ``sentences`` minus ``exclude`` and the reserved slice.

    >>> make_lm_text(["b c", "a", "b c", "d"], exclude={"d"})
    ['a', 'b c']
    """
    return sorted({s for s in sentences if s not in exclude and not is_reserved(s)})


def write_lm_text(sentences: Sequence[str], out: Path) -> None:
    """``lm<N> <sentence>`` lines, written by temp file and rename."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for i, s in enumerate(sentences):
            f.write(f"lm{i:07d} {s}\n")
    os.replace(tmp, out)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="LM training text: sources minus the evaluation sets and the reserved slice."
    )
    parser.add_argument("--plain", type=Path, nargs="*", default=[],
                        help="sources with one sentence per line")  # fmt: skip
    parser.add_argument("--kaldi", type=Path, nargs="*", default=[],
                        help="sources in Kaldi text format (<utt> <words>)")  # fmt: skip
    parser.add_argument("--exclude", type=Path, nargs="*", default=[],
                        help="Kaldi text files whose sentences must not be LM text")  # fmt: skip
    parser.add_argument("--out", type=Path, required=True)
    return parser


def main(cmd: Optional[Sequence[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(message)s")
    try:
        if not args.plain and not args.kaldi:
            raise LMTextError("no LM text source: give --plain and/or --kaldi files")
        sentences = [s for p in args.plain for s in read_plain(p)]
        sentences += [s for p in args.kaldi for s in read_kaldi(p)]
        exclude = {s for p in args.exclude for s in read_kaldi(p)}
        text = make_lm_text(sentences, exclude)
        if not text:
            raise LMTextError(
                f"no LM text left: {len(sentences)} source sentences, all in the excluded "
                f"sets or the reserved slice (sources: {[str(p) for p in args.plain + args.kaldi]})"
            )
    except LMTextError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    write_lm_text(text, args.out)
    logger.info("%d LM sentences (%d source sentences, %d excluded sentences) -> %s",
                len(text), len(sentences), len(exclude), args.out)  # fmt: skip


if __name__ == "__main__":
    main()
