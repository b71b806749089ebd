"""Speed perturbation of a data directory, as ESPnet's ``asr.sh`` does it.

Usage:
    python -m espnet_omni.corpus.speed_perturb --in dump/raw/train \
        --out dump/raw/train_sp --factors 0.9 1.0 1.1 --nj 2

Each factor ``f`` is a copy of the data directory whose audio is played ``f``
times faster (sox ``speed f``: tempo, pitch and formants all scale by ``f``,
Kaldi's ``perturb_data_dir_speed.sh``), and whose utterance and speaker ids
carry the prefix ``sp<f>-`` (``sp0.9-kal-000123`` of speaker ``sp0.9-kal``), so
each factor is its own speaker.  Factor 1.0 keeps the original ids and audio.

Writes ``<out>/{wav.scp,text,utt2spk,spk2utt,utt2num_samples[,utt2family]}``
and the perturbed audio under ``<out>/wav/sp<f>/`` (16-bit PCM, the input's
rate).  Resumable: a wav that exists is complete (written under a temp name,
then renamed) and is kept.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import soundfile as sf

from espnet_omni.corpus.datadir import DataDir, DataDirError, read_datadir, write_datadir

logger = logging.getLogger(__name__)


def prefix(factor: float) -> str:
    """Id prefix of a factor (ESPnet's spelling), ``""`` for 1.0.

    >>> prefix(0.9), prefix(1.1), prefix(1.0)
    ('sp0.9-', 'sp1.1-', '')
    """
    return "" if factor == 1.0 else f"sp{factor:g}-"


def _render(job: Tuple[str, str, float, str]) -> int:
    """sox ``speed`` one wav into place (worker entry point); returns its sample count."""
    sox, src, factor, dst = job
    if not os.path.isfile(dst):
        part = f"{dst}.part.wav"
        cmd = [sox, "-R", "-D", "-V1", src, "-t", "wav", "-b", "16", part,
               "speed", f"{factor:g}", "rate", str(sf.info(src).samplerate)]  # fmt: skip
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"{src}: `{' '.join(cmd)}` failed: {res.stderr.strip()[-300:]}")
        os.replace(part, dst)
    return sf.info(dst).frames


def perturb(src: DataDir, out: Path, factors: Sequence[float], nj: int = 2) -> DataDir:
    """The speed-perturbed union of ``src`` (see the module docstring)."""
    if not factors or any(not 0.5 <= f <= 2.0 for f in factors) or len(set(factors)) < len(factors):
        raise ValueError(f"--factors {list(factors)}: expected distinct factors in [0.5, 2.0]")
    sox = shutil.which("sox")
    if sox is None:
        raise FileNotFoundError("sox not found on PATH: apt-get install sox")
    out = Path(out).resolve()
    wav, text, spk, fam, nsamp = {}, {}, {}, {}, {}
    jobs: List[Tuple[str, str, float, str]] = []
    keys: List[str] = []
    for f in factors:
        p = prefix(f)
        if p:
            (out / "wav" / f"sp{f:g}").mkdir(parents=True, exist_ok=True)
        for utt, path in src.wav_scp.values.items():
            key = p + utt
            if p:
                dst = str(out / "wav" / f"sp{f:g}" / f"{utt}.wav")
                jobs.append((sox, path, f, dst))
                keys.append(key)
                wav[key] = dst
            else:
                wav[key] = path
                if utt in src.utt2num_samples.values:
                    nsamp[key] = src.utt2num_samples.values[utt]
                else:
                    nsamp[key] = str(sf.info(path).frames)
            text[key] = src.text.values[utt]
            spk[key] = p + src.utt2spk.values[utt]
            if utt in src.utt2family.values:
                fam[key] = src.utt2family.values[utt]
    logger.info("speed perturbation %s: %d utterances to check or render (nj=%d)",
                list(factors), len(jobs), nj)  # fmt: skip
    if nj > 1 and len(jobs) > 1:
        with multiprocessing.get_context("fork").Pool(nj) as pool:
            frames = pool.map(_render, jobs, chunksize=16)
    else:
        frames = [_render(j) for j in jobs]
    nsamp.update({k: str(n) for k, n in zip(keys, frames, strict=True)})
    d = DataDir.from_dicts(wav_scp=wav, text=text, utt2spk=spk, utt2family=fam,
                           utt2num_samples=nsamp)  # fmt: skip
    d.validate()
    write_datadir(d, out)
    return d


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Speed-perturbed copy of a data directory.")
    parser.add_argument("--in", dest="src", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--factors", type=float, nargs="+", default=[0.9, 1.0, 1.1])
    parser.add_argument("--nj", type=int, default=2)
    return parser


def main(cmd: Optional[Sequence[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(message)s")
    try:
        d = perturb(read_datadir(args.src), args.out, args.factors, args.nj)
    except (DataDirError, ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    logger.info("%d utterances -> %s", len(d.wav_scp.values), args.out)


if __name__ == "__main__":
    main()
