"""Decode a Kaldi data dir chunk by chunk; write ``text`` and ``latency.json``.

The library side of ``python -m espnet_omni.bin.asr_inference_streaming``.
Audio is fed one encoder chunk of samples at a time, as a live source would
deliver it; compute is timed on the threads torch has (the entry sets one).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Union

import numpy as np
import torch

from espnet2.fileio.sound_scp import SoundScpReader
from espnet_omni.corpus.audio_check import BadAudioError, require_finite
from espnet_omni.inference.streaming_recognizer import StreamingRecognizer

logger = logging.getLogger(__name__)
ON_ERROR = ("fail", "drop")


def _read_checked(reader: SoundScpReader, utt: str, scp: Path, rec: StreamingRecognizer):
    """``(fs, wav)`` of ``utt``, checked as ``rec.feed`` would check it.

    Raises:
        BadAudioError: naming ``utt`` and its file: unreadable, no audio, NaN
            or inf samples, another rate than the model's, several channels.
    """
    where = f"utterance {utt!r} in {scp} ({reader.get_path(utt)})"
    try:
        fs, wav = reader[utt]
    except Exception as e:  # libsndfile raises several types for a missing or broken file
        raise BadAudioError(f"{where}: unreadable ({type(e).__name__}: {e})") from None
    if wav is None:
        raise BadAudioError(f"{where}: no audio (wav.scp says None)")
    require_finite(wav, utt, str(scp))
    try:
        rec.check_audio(wav, fs)
    except ValueError as e:
        raise BadAudioError(f"{where}: {e}") from None
    return fs, wav


def decode_data_dir(rec: StreamingRecognizer, data_dir: Union[str, Path],
                    output_dir: Union[str, Path], on_error: str = "fail") -> dict:
    """Decode ``data_dir/wav.scp``; writes ``output_dir/{text,latency.json}``.

    Returns the ``latency.json`` content: real-time factor (compute / audio
    duration), per-chunk compute ms (mean, max), the algorithmic latency and
    its parts, the config and the thread count, and the utterances dropped.

    ``on_error``: what a bad utterance (unreadable, NaN or inf samples,
    another sample rate than the model's, several channels) does. ``fail``:
    raises :class:`~espnet_omni.corpus.audio_check.BadAudioError` naming its
    id and file. ``drop``: it is left out of ``text`` (the scorer counts a
    missing hypothesis as empty: all its words deleted), logged with its id
    and reason, and counted at the end (``num_dropped``, ``dropped``: id ->
    reason, in ``latency.json``).

    Raises:
        ValueError: ``on_error`` not in :data:`ON_ERROR`.
        FileNotFoundError: no ``data_dir/wav.scp``.
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error={on_error!r}, valid: {ON_ERROR}")
    data_dir, output_dir = Path(data_dir), Path(output_dir)
    scp = data_dir / "wav.scp"
    if not scp.is_file():
        raise FileNotFoundError(f"{scp} not found (a Kaldi data dir needs wav.scp)")
    output_dir.mkdir(parents=True, exist_ok=True)
    reader = SoundScpReader(str(scp), dtype="float32")
    step = rec.chunk_samples()
    lines, chunk_ms = [], []
    audio_s = compute_s = 0.0
    dropped = {}
    for utt in sorted(reader.keys()):
        try:
            fs, wav = _read_checked(reader, utt, scp, rec)
        except BadAudioError as e:
            if on_error == "fail":
                raise
            logger.warning("dropped %s", e)
            dropped[utt] = str(e)
            continue
        rec.reset()
        tic = time.perf_counter()
        for start in range(0, wav.shape[0], step):
            rec.feed(wav[start : start + step], fs=fs)
        text = rec.finish()
        compute_s += time.perf_counter() - tic
        audio_s += wav.shape[0] / fs
        chunk_ms += rec.chunk_ms
        lines.append(f"{utt} {text}".rstrip() + "\n")
    (output_dir / "text").write_text("".join(lines))
    if dropped:
        logger.warning("%s: dropped %d of %d utterances (not in %s; scoring counts their words as deleted)",
                       scp, len(dropped), len(reader), output_dir / "text")
    lat = rec.latency()
    report = {
        "num_utterances": len(lines),
        "audio_seconds": round(audio_s, 3),
        "compute_seconds": round(compute_s, 3),
        "rtf": round(compute_s / audio_s, 4) if audio_s else None,
        "num_threads": torch.get_num_threads(),
        "num_chunks": len(chunk_ms),
        "chunk_compute_ms_mean": round(float(np.mean(chunk_ms)), 3) if chunk_ms else None,
        "chunk_compute_ms_max": round(float(np.max(chunk_ms)), 3) if chunk_ms else None,
        "algorithmic_latency_ms": round(lat.total_ms, 3),
        "latency_parts_ms": {
            "chunk": round(lat.chunk_ms, 3),
            "lookahead": round(lat.lookahead_ms, 3),
            "frontend": round(lat.frontend_ms, 3),
        },
        "streaming": rec.cfg.to_dict(),
        "beam_size": rec.beam_size,
        "num_dropped": len(dropped),
        "dropped": dropped,
    }
    (output_dir / "latency.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
