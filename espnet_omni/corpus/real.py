"""The ``real`` test set: 5 LibriVox sentences read by a human.

Usage:
    python -m espnet_omni.corpus.real --out data

Reads ``/usr/share/pocketsphinx/test/data/librivox`` (Debian package
pocketsphinx-testdata): ``transcription`` (``<s> text </s> (file-id)`` lines)
and ``<file-id>.wav``.  Writes ``<out>/real/{wav.scp,text,utt2spk,spk2utt,
utt2family}`` with family ``librivox`` and speaker ``librivox`` (one reader).
A wav that is not 16 kHz mono 16-bit PCM is converted with sox into
``<out>/wav/real/``; otherwise ``wav.scp`` points at the original file.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional, Sequence

import soundfile as sf

from espnet_omni.corpus.datadir import DataDir, DataDirError, read_lines, write_datadir
from espnet_omni.corpus.text import normalize_transcript

logger = logging.getLogger(__name__)

LIBRIVOX_DIR = Path("/usr/share/pocketsphinx/test/data/librivox")
SPEAKER = "librivox"
FAMILY = "librivox"
SAMPLE_RATE = 16000
_LINE = re.compile(r"^(?P<text>.*)\((?P<fid>[^()\s]+)\)\s*$")


def parse_transcription(path: Path) -> Dict[str, str]:
    """``{file-id: normalized transcript}`` from a Sphinx ``transcription`` file."""
    out: Dict[str, str] = {}
    for lineno, line in read_lines(path):
        if not line.strip():
            continue
        m = _LINE.match(line)
        if m is None:
            raise DataDirError(
                f"{path}:{lineno}: expected '<s> words </s> (file-id)', got {line!r}"
            )
        out[m.group("fid")] = normalize_transcript(m.group("text"))
    return out


def _needs_conversion(path: Path) -> bool:
    info = sf.info(str(path))
    return (info.samplerate, info.channels, info.subtype) != (SAMPLE_RATE, 1, "PCM_16")


def prepare_real(out: Path, src: Path = LIBRIVOX_DIR) -> DataDir:
    """Write ``<out>/real`` from the LibriVox test data under ``src``."""
    trans = src / "transcription"
    if not trans.is_file():
        raise FileNotFoundError(
            f"{trans} not found: apt-get install pocketsphinx-testdata"
        )
    out = Path(out).resolve()
    wav_scp, text = {}, {}
    for fid, words in sorted(parse_transcription(trans).items()):
        wav = src / f"{fid}.wav"
        if not wav.is_file():
            raise FileNotFoundError(f"{trans}: {wav} listed but not found")
        utt = f"{SPEAKER}-{fid}"
        if _needs_conversion(wav):
            if shutil.which("sox") is None:
                raise FileNotFoundError("sox not found on PATH: apt-get install sox")
            dst = out / "wav" / "real" / f"{utt}.wav"
            dst.parent.mkdir(parents=True, exist_ok=True)
            part = dst.with_name(f".{utt}.part.wav")
            subprocess.run(
                ["sox", "-R", "-D", "-V1", str(wav), "-t", "wav", "-r", str(SAMPLE_RATE),
                 "-c", "1", "-b", "16", "-e", "signed-integer", str(part)],
                check=True,
            )  # fmt: skip
            os.replace(part, dst)
            wav = dst
        wav_scp[utt] = str(wav.resolve())
        text[utt] = words
    d = DataDir.from_dicts(
        wav_scp=wav_scp,
        text=text,
        utt2spk={u: SPEAKER for u in wav_scp},
        utt2family={u: FAMILY for u in wav_scp},
    )
    d.validate()
    write_datadir(d, out / "real")
    logger.info("real: %d utterances -> %s", len(wav_scp), out / "real")
    return d


def main(cmd: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Prepare the LibriVox 'real' test set.")
    parser.add_argument("--out", type=Path, default=Path("data"), help="output root")
    parser.add_argument("--src", type=Path, default=LIBRIVOX_DIR, help="LibriVox test data")
    args = parser.parse_args(cmd)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(message)s")
    try:
        prepare_real(args.out, args.src)
    except (FileNotFoundError, DataDirError, subprocess.CalledProcessError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
