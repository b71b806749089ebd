"""Synthesize the embedded corpus into Kaldi data directories.

Usage:
    python -m espnet_omni.corpus.synth --out data --size tiny            # ~40 utts, tests
    python -m espnet_omni.corpus.synth --out data --size default --nj 2  # ~3000 utts
    python -m espnet_omni.corpus.synth --out data --size default --num_utts 6000 --seed 1

Writes:
    <out>/{train,dev,test,test_seen}/{wav.scp,text,utt2spk,spk2utt,utt2family}
    <out>/wav/<split>/<utt-id>.wav     16 kHz, mono, 16-bit PCM
    <out>/wav/synth_plan.tsv           utt, split, voice, tempo, pitch, peak, text
    <out>/lm_pool.txt                  pool sentences of no evaluation split and not
                                       in the reserved slice (the LM text's source)

Each utterance is one TTS voice (see ``voices.py``) reading one sentence (see
``text.py``).  Augmentation costs almost nothing: ``sox speed p`` (one
resampling, fused with the resampling to 16 kHz) multiplies F0, formants and
speaking rate by ``p = 2**(cents/1200)``; the engine's own duration control
(espeak-ng ``-s``, flite ``duration_stretch``, festival ``Duration_Stretch`` or
HTS ``-r``) stretches by ``p / tempo`` beforehand, so the final rate is
``tempo``.  A pseudo-speaker's warp multiplies ``p`` the same way.  sox then
sets the peak level.  The run is deterministic for a seed, and
resumable: a wav that exists is complete (written under a temp name, then
renamed) and is skipped; wavs of an older plan that differ from the new one
are deleted first.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import soundfile as sf
from tqdm import tqdm

from espnet_omni.corpus.datadir import DataDir, write_datadir
from espnet_omni.corpus.plan import (
    PLAN_SPLITS,
    PLAN_VERSION,
    SIZES,
    TRAIN_VOICES,
    PlannedUtt,
    SynthConfig,
    build_plan,
    lm_pool,
)
from espnet_omni.corpus.text import PoolConfig, Sentence, build_pool
from espnet_omni.corpus.voices import MissingEngineError, catalogue, check_available

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
CHUNK = 8  # utterances per worker task; one festival process per chunk
ESPEAK_WPM = 175  # espeak-ng's default speaking rate (words per minute)
PLAN_FILE = "synth_plan.tsv"
LM_POOL_FILE = "lm_pool.txt"


class SynthError(RuntimeError):
    """An engine or sox failed on an utterance."""


@functools.lru_cache(maxsize=4)
def cached_pool(cfg: PoolConfig) -> Tuple[Sentence, ...]:
    """:func:`build_pool` once per process (it takes a few CPU seconds)."""
    return tuple(build_pool(cfg))


def _run(cmd: List[str], utt: str, stdin: Optional[str] = None) -> None:
    res = subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SynthError(
            f"utterance {utt}: `{' '.join(cmd)}` exited with {res.returncode}: "
            f"{res.stderr.strip()[-500:]}"
        )


def pitch_factor(u: PlannedUtt) -> float:
    """Frequency factor of the pitch shift and the voice's warp (sox ``speed``)."""
    return 2.0 ** (u.pitch_cents / 1200.0) * u.voice.warp


def duration_stretch(u: PlannedUtt) -> float:
    """Native duration multiplier so that, after ``speed``, the rate is ``tempo``."""
    return pitch_factor(u) / u.tempo


def _engine_raw(utts: Sequence[PlannedUtt], tmp: Path, tools: Dict[str, str]) -> List[Path]:
    """Render each utterance with its engine (own sample rate, native stretch)."""
    raws = [tmp / f"raw{i}.wav" for i in range(len(utts))]
    pairs = list(zip(utts, raws, strict=True))
    festival = [(u, r) for u, r in pairs if u.voice.engine == "festival"]
    if festival:  # one festival process for the chunk: its start-up is ~0.3 s
        lines = []
        for u, raw in festival:
            if '"' in u.display or "\\" in u.display:
                raise SynthError(f"utterance {u.utt_id}: text has a quote or backslash")
            stretch = duration_stretch(u)
            # Re-selecting the voice resets hts_engine_params; Duration_Stretch
            # is global, so it is set for every utterance.
            lines += [
                f"(voice_{u.voice.name})",
                f"(Parameter.set 'Duration_Stretch {stretch:.4f})",
            ]
            if u.voice.name.endswith("_hts"):  # HTS ignores Duration_Stretch
                rate = f'(list (list "-r" {1 / stretch:.4f}))'
                lines.append(f"(set! hts_engine_params (append hts_engine_params {rate}))")
            lines += [
                f'(set! utt (Utterance Text "{u.display}"))',
                "(utt.synth utt)",
                f'(utt.save.wave utt "{raw}" \'riff)',
            ]
        script = tmp / "synth.scm"
        script.write_text("\n".join(lines) + "\n")
        _run([tools["festival"], "-b", str(script)], festival[0][0].utt_id)
    for u, raw in zip(utts, raws, strict=True):
        if u.voice.engine == "espeak-ng":
            wpm = round(ESPEAK_WPM / duration_stretch(u))
            _run([tools["espeak-ng"], "-v", u.voice.name, "-s", str(wpm), "-w", str(raw),
                  "--stdin"], u.utt_id, stdin=u.display)  # fmt: skip
        elif u.voice.engine == "flite":
            _run([tools["flite"], "-voice", u.voice.name,
                  "--setf", f"duration_stretch={duration_stretch(u):.4f}",
                  "-t", u.display, "-o", str(raw)], u.utt_id)  # fmt: skip
        if not raw.is_file() or raw.stat().st_size <= 44:
            raise SynthError(f"utterance {u.utt_id}: {u.voice.voice_id} wrote no audio")
    return raws


def render_chunk(args: Tuple[List[PlannedUtt], str, Dict[str, str]]) -> int:
    """Render a chunk of utterances to ``<wav_root>/<split>/<utt>.wav``.

    Worker entry point (top-level so it pickles).  Returns the chunk size.
    """
    utts, wav_root, tools = args
    root = Path(wav_root)
    with tempfile.TemporaryDirectory(prefix=".tmp", dir=root) as tmp_name:
        raws = _engine_raw(utts, Path(tmp_name), tools)
        for u, raw in zip(utts, raws, strict=True):
            final = root / u.split / f"{u.utt_id}.wav"
            part = final.with_name(f".{u.utt_id}.part.wav")
            # -R: repeatable; -D: no dither, so the bytes depend on the plan only.
            cmd = [tools["sox"], "-R", "-D", "-V1", str(raw),
                   "-t", "wav", "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16",
                   "-e", "signed-integer", str(part),
                   "speed", f"{pitch_factor(u):.6f}", "rate", str(SAMPLE_RATE),
                   "gain", "-n", f"{u.peak_db:.1f}"]  # fmt: skip
            _run(cmd, u.utt_id)
            os.replace(part, final)
    return len(utts)


def _sync_plan(plan: Sequence[PlannedUtt], wav_root: Path) -> None:
    """Delete wavs whose plan row changed, then write the new plan file."""
    plan_path = wav_root / PLAN_FILE
    new_rows = {u.utt_id: u.row() for u in plan}
    if plan_path.is_file():
        lines = plan_path.read_text(encoding="utf-8").splitlines()
        same_version = bool(lines) and lines[0] == f"# {PLAN_VERSION}"
        stale = 0
        for line in lines[1:]:
            utt, split = line.split("\t", 2)[:2]
            if not same_version or new_rows.get(utt) != line:
                path = wav_root / split / f"{utt}.wav"
                if path.is_file():
                    path.unlink()
                    stale += 1
        if stale:
            logger.info("deleted %d wavs of an earlier, different plan", stale)
    tmp = plan_path.with_name(f".{PLAN_FILE}.tmp")
    tmp.write_text(
        "\n".join([f"# {PLAN_VERSION}"] + [u.row() for u in plan]) + "\n", encoding="utf-8"
    )
    os.replace(tmp, plan_path)


def synthesize(
    cfg: SynthConfig, out: Path, nj: int = 2, progress: bool = True
) -> Dict[str, DataDir]:
    """Render the corpus of ``cfg`` under ``out``; return ``{split: DataDir}``.

    Raises :class:`MissingEngineError` when an engine or voice is missing and
    :class:`SynthError` when an engine fails.
    """
    if nj < 1:
        raise ValueError(f"nj must be >= 1, got {nj}")
    # Check the engines first: building the pool takes a few seconds.
    families = {f for f, w in cfg.family_weights if w > 0}
    tools = check_available([v for v in catalogue() if v.family in families])
    sentences = cached_pool(cfg.pool)
    plan = build_plan(cfg, sentences)
    out = Path(out).resolve()
    wav_root = out / "wav"
    splits = [s for s in PLAN_SPLITS if any(u.split == s for u in plan)]
    for split in splits:
        (wav_root / split).mkdir(parents=True, exist_ok=True)
    for leftover in wav_root.glob(".tmp*"):  # temp dirs of an interrupted run
        shutil.rmtree(leftover, ignore_errors=True)
    _sync_plan(plan, wav_root)

    todo = [u for u in plan if not (wav_root / u.split / f"{u.utt_id}.wav").is_file()]
    logger.info("%d utterances planned, %d to render (nj=%d)", len(plan), len(todo), nj)
    # Festival chunks first: they are the slowest, so the pool ends together.
    todo.sort(key=lambda u: (u.voice.engine != "festival", u.voice.voice_id, u.utt_id))
    chunks = [(todo[i : i + CHUNK], str(wav_root), tools) for i in range(0, len(todo), CHUNK)]
    start = time.time()
    with tqdm(total=len(todo), desc="synth", unit="utt", disable=not progress) as bar:
        if nj == 1:
            for chunk in chunks:
                bar.update(render_chunk(chunk))
        elif chunks:
            with multiprocessing.get_context("fork").Pool(nj) as pool:
                for n in pool.imap_unordered(render_chunk, chunks):
                    bar.update(n)
    if todo:
        logger.info("rendered %d utterances in %.1f s", len(todo), time.time() - start)

    lm_text = sorted({s.transcript for s in lm_pool(cfg, sentences)})
    tmp = out / f".{LM_POOL_FILE}.tmp"
    tmp.write_text("".join(t + "\n" for t in lm_text), encoding="utf-8")
    os.replace(tmp, out / LM_POOL_FILE)
    logger.info("LM text pool: %d sentences -> %s", len(lm_text), out / LM_POOL_FILE)

    dirs: Dict[str, DataDir] = {}
    for split in splits:
        utts = [u for u in plan if u.split == split]
        d = DataDir.from_dicts(
            wav_scp={u.utt_id: str(wav_root / split / f"{u.utt_id}.wav") for u in utts},
            text={u.utt_id: u.transcript for u in utts},
            utt2spk={u.utt_id: u.voice.speaker for u in utts},
            utt2family={u.utt_id: u.voice.family for u in utts},
        )
        d.validate()
        write_datadir(d, out / split)
        seconds = sum(sf.info(p).duration for p in d.wav_scp.values.values())
        logger.info("%s: %d utts, %.2f h -> %s", split, len(utts), seconds / 3600, out / split)
        dirs[split] = d
    return dirs


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Synthesize the embedded TTS corpus into Kaldi data dirs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=Path("data"), help="output root")
    parser.add_argument("--size", choices=sorted(SIZES), default="default",
                        help=f"preset (train, dev, test, test_seen) counts: {SIZES}")  # fmt: skip
    parser.add_argument("--num_utts", type=int, default=None,
                        help="total utterances, shared in the preset's proportions")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nj", type=int, default=2, help="parallel worker processes")
    parser.add_argument("--vocab_size", type=int, default=2000,
                        help="sentences use only the N most frequent pool words")  # fmt: skip
    parser.add_argument("--train_voices", choices=TRAIN_VOICES, default="base",
                        help="base: the recorded train voices and the plan-v1 ranges; all: + "
                        "pseudo-speakers, extra espeak variants, wider train ranges")  # fmt: skip
    parser.add_argument("--untranscribed", type=int, default=0,
                        help="N utterances of extra audio (training voices, sentences of no other "
                        "split) in <out>/untranscribed, for self-supervised pretraining; the "
                        "other splits are unchanged")
    parser.add_argument("--log_level", default="INFO")
    return parser


def main(cmd: Optional[Sequence[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(message)s")
    try:
        pool = dataclasses.replace(SynthConfig().pool, vocab_size=args.vocab_size)
        cfg = SynthConfig.from_size(args.size, args.num_utts, seed=args.seed, pool=pool,
                                    train_voices=args.train_voices,
                                    num_untranscribed=args.untranscribed)  # fmt: skip
        synthesize(cfg, args.out, nj=args.nj)
    except (MissingEngineError, SynthError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
