"""Noise recordings and room impulse responses, generated offline, for ESPnet's preprocessor.

Usage:
    python -m espnet_omni.corpus.noise_rir --out dump/raw/noise_rir \
        --babble_from dump/raw/train/wav.scp --seed 0
    python -m espnet_omni.corpus.noise_rir --check dump/raw/noise_rir/noise.scp --fs 16000

Writes ``<out>/noise.scp`` and ``<out>/rir.scp`` (``<id> <wav>`` lines, what
``asr_train --noise_scp/--rir_scp`` read) and the wavs under ``<out>/wav/``,
16 kHz mono 16-bit PCM.  No download: everything is numpy and a seed.

* Noises (:data:`NOISE_KINDS`, ``--noises`` of each, 8 s): white, pink (1/f),
  brown (1/f^2), mains hum with harmonics under pink noise, and babble: 4-7
  training utterances summed at random offsets (``--babble_from``; the train
  set's own voices, never an evaluation voice).  The preprocessor adds one at
  a random SNR in ``noise_db_range``.
* RIRs (``--rirs``): a direct path, 3-8 early reflections in the first 50 ms,
  and an exponentially decaying Gaussian tail with RT60 uniform in
  [0.15, 0.8] s (Schroeder's statistical model of a room's late reverberation),
  scaled so the direct path is 1.

``--check`` validates a list the way the training needs it: every line
``<id> <wav>``, the wav exists, is mono and at ``--fs`` Hz; otherwise an
error naming the list, its line and what was expected (ESPnet itself would
read a wrong-rate noise as it is, or fail mid-training).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import soundfile as sf

from espnet_omni.corpus.datadir import read_lines

logger = logging.getLogger(__name__)

NOISE_KINDS = ("white", "pink", "brown", "hum", "babble")
NOISE_SECONDS = 8.0
RT60_RANGE = (0.15, 0.8)


class NoiseRirError(ValueError):
    """A noise or RIR list that the training cannot use."""


def _colored(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Gaussian noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    return np.fft.irfft(spec / f ** (exponent / 2), n)


def make_noise(kind: str, rng: np.random.Generator, fs: int, babble: Sequence[str] = ()) -> np.ndarray:
    """One noise signal of :data:`NOISE_SECONDS`, peak-normalized to 0.5."""
    n = int(NOISE_SECONDS * fs)
    if kind in ("white", "pink", "brown"):
        x = _colored(rng, n, {"white": 0.0, "pink": 1.0, "brown": 2.0}[kind])
    elif kind == "hum":
        t = np.arange(n) / fs
        f0 = rng.choice([50.0, 60.0])
        x = sum(rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.3))
                for k in range(1, 8))  # fmt: skip
        x = x + 0.05 * _colored(rng, n, 1.0) / 3
    elif kind == "babble":
        if not babble:
            raise NoiseRirError("babble noise needs speech: give --babble_from <wav.scp>")
        x = np.zeros(n)
        for path in rng.choice(babble, size=int(rng.integers(4, 8)), replace=False):
            y, sr = sf.read(path, dtype="float64")
            if sr != fs or y.ndim != 1:
                raise NoiseRirError(f"{path}: babble source must be mono {fs} Hz, got {sr} Hz")
            y = np.tile(y, int(np.ceil(n / max(len(y), 1))) + 1)
            start = int(rng.integers(0, len(y) - n + 1))
            x += y[start : start + n] / (np.abs(y).max() + 1e-9)
    else:
        raise NoiseRirError(f"noise kind {kind!r}, valid: {NOISE_KINDS}")
    return 0.5 * x / (np.abs(x).max() + 1e-9)


def make_rir(rng: np.random.Generator, fs: int) -> np.ndarray:
    """One synthetic room impulse response (see the module docstring)."""
    rt60 = rng.uniform(*RT60_RANGE)
    n = int(min(1.2 * rt60, 1.0) * fs)
    t = np.arange(n) / fs
    # 60 dB of decay in rt60 seconds: amplitude exp(-6.9 t / rt60).
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    onset = int(0.002 * fs)  # the tail starts after the direct path
    tail[:onset] = 0.0
    drr_db = rng.uniform(-3.0, 12.0)  # direct-to-reverberant energy ratio
    tail *= np.sqrt(10 ** (-drr_db / 10) / (np.sum(tail**2) + 1e-12))
    h = tail
    h[0] += 1.0
    for _ in range(int(rng.integers(3, 9))):
        h[int(rng.integers(onset, int(0.05 * fs)))] += rng.uniform(-0.6, 0.6)
    return h / np.abs(h[0])


def _write(path: Path, x: np.ndarray, fs: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp.wav")
    sf.write(tmp, np.clip(x, -1.0, 1.0), fs, subtype="PCM_16")
    os.replace(tmp, path)


def generate(out: Path, seed: int = 0, noises: int = 4, rirs: int = 40, fs: int = 16000,
             babble_from: Optional[Path] = None) -> None:  # fmt: skip
    """Write ``noises`` of each kind and ``rirs`` impulse responses under ``out``."""
    out = Path(out).resolve()
    (out / "wav").mkdir(parents=True, exist_ok=True)
    babble: List[str] = []
    if babble_from is not None:
        babble = sorted(line.split(maxsplit=1)[1] for line in check_scp(babble_from, fs))
    rng = np.random.default_rng(seed)
    noise_lines, rir_lines = [], []
    for kind in NOISE_KINDS:
        if kind == "babble" and not babble:
            logger.warning("no --babble_from: no babble noise")
            continue
        for i in range(noises):
            path = out / "wav" / f"noise_{kind}_{i:02d}.wav"
            _write(path, make_noise(kind, rng, fs, babble), fs)
            noise_lines.append(f"noise_{kind}_{i:02d} {path}")
    for i in range(rirs):
        path = out / "wav" / f"rir_{i:03d}.wav"
        _write(path, make_rir(rng, fs), fs)
        rir_lines.append(f"rir_{i:03d} {path}")
    for name, lines in (("noise.scp", noise_lines), ("rir.scp", rir_lines)):
        (out / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    logger.info("%d noises, %d RIRs -> %s", len(noise_lines), len(rir_lines), out)


def check_scp(scp: Path, fs: int) -> List[str]:
    """The lines of a noise/RIR/wav list, each checked (see ``--check``); raises NoiseRirError."""
    scp = Path(scp)
    if not scp.is_file():
        raise NoiseRirError(f"{scp}: list not found")
    rows = [(n, line) for n, line in read_lines(scp, NoiseRirError) if line.strip()]
    if not rows:
        raise NoiseRirError(f"{scp}: empty list; expected '<id> <wav path>' lines")
    for lineno, line in rows:
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            raise NoiseRirError(f"{scp}:{lineno}: expected '<id> <wav path>', got {line!r}")
        path = parts[1]
        if not os.path.isfile(path):
            raise NoiseRirError(f"{scp}:{lineno}: {path}: file not found")
        try:
            info = sf.info(path)
        except RuntimeError as e:
            raise NoiseRirError(f"{scp}:{lineno}: {path}: not readable audio ({e})") from None
        if info.samplerate != fs or info.channels != 1:
            raise NoiseRirError(
                f"{scp}:{lineno}: {path}: {info.samplerate} Hz, {info.channels} channel(s); "
                f"expected mono {fs} Hz (the training audio's rate)"
            )
    return [line for _, line in rows]


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Offline noises and RIRs for ESPnet's preprocessor.")
    parser.add_argument("--out", type=Path, help="output directory (generate)")
    parser.add_argument("--check", type=Path, nargs="*", default=[], help="lists to validate")
    parser.add_argument("--babble_from", type=Path, help="wav.scp of the training speech")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noises", type=int, default=4, help="noises of each kind")
    parser.add_argument("--rirs", type=int, default=40)
    parser.add_argument("--fs", type=int, default=16000)
    return parser


def main(cmd: Optional[Sequence[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(message)s")
    try:
        if args.out is not None:
            generate(args.out, args.seed, args.noises, args.rirs, args.fs, args.babble_from)
        for scp in args.check:
            logger.info("%s: %d entries, all mono %d Hz", scp, len(check_scp(scp, args.fs)), args.fs)
        if args.out is None and not args.check:
            raise NoiseRirError("nothing to do: give --out (generate) and/or --check LIST")
    except NoiseRirError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
