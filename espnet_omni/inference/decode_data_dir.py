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
from typing import Optional, Union

import numpy as np
import torch

from espnet2.fileio.sound_scp import SoundScpReader
from espnet_omni.corpus.audio_check import BadAudioError, require_complete, require_finite
from espnet_omni.inference.endpoint import EndpointConfig
from espnet_omni.inference.segmenter import SegmentingRecognizer, segment_lines
from espnet_omni.export.config import PRUNED_ENCODER
from espnet_omni.inference.streaming_recognizer import StreamingRecognizer
from espnet_omni.tasks.checkpoint import check_model_files

logger = logging.getLogger(__name__)
ON_ERROR = ("fail", "drop")


class NotStreamableError(ValueError):
    """A model the PyTorch chunk-by-chunk decoder cannot stream; the message says what can."""


def require_streamable_config(asr_train_config: Union[str, Path], asr_model_file: Union[str, Path]) -> None:
    """Raise :class:`NotStreamableError` when ``asr_train_config`` is an exported
    sub-network's (``encoder: omni_conformer_pruned``, ``espnet_omni.bin.export``
    formats sparse, row, structured), its message giving the two ways to stream it:
    its dense copy (``export --dense_copy``) in the supernet's config, as run.sh
    stage 10 does, or its ONNX export (``--onnx_dir``).

    Raises:
        ModelFileError: either file missing (:func:`~espnet_omni.tasks.checkpoint.check_model_files`).
    """
    import yaml

    check_model_files(asr_train_config, asr_model_file)
    conf = yaml.safe_load(Path(asr_train_config).read_text(encoding="utf-8"))
    if not isinstance(conf, dict) or conf.get("encoder") != PRUNED_ENCODER:
        return
    sup = Path(conf.get("output_dir") or "<supernet dir>") / "config.yaml"  # the export keeps the training's
    sup = sup if sup.is_file() else "<supernet dir>/config.yaml"
    dense = Path(asr_model_file).parent / "dense" / "model.pth"
    dense = dense if dense.is_file() else "<export dir>/dense/model.pth"
    raise NotStreamableError(
        f"{asr_train_config}: an exported sub-network (encoder: {PRUNED_ENCODER}) does not stream in "
        f"PyTorch; stream its dense copy in the supernet's encoder, as run.sh stage 10 does: "
        f"--asr_train_config {sup} --asr_model_file {dense} (espnet_omni.bin.export --dense_copy DIR "
        f"writes DIR/model.pth), or export it with espnet_omni.bin.export_onnx --out_dir DIR and "
        f"stream that with --onnx_dir DIR")


def _read_checked(reader: SoundScpReader, utt: str, scp: Path, rec: StreamingRecognizer):
    """``(fs, wav)`` of ``utt``, checked as ``rec.feed`` would check it.

    Raises:
        BadAudioError: naming ``utt`` and its file: unreadable, no audio, no
            samples, cut short (header longer than the file:
            :func:`~espnet_omni.corpus.audio_check.require_complete`, the
            format stage's check), NaN or inf samples, another rate than the
            model's, several channels.
    """
    path = reader.get_path(utt)
    where = f"utterance {utt!r} in {scp} ({path})"
    try:
        fs, wav = reader[utt]
    except Exception as e:  # libsndfile raises several types for a missing or broken file
        raise BadAudioError(f"{where}: unreadable ({type(e).__name__}: {e})") from None
    if wav is None:
        raise BadAudioError(f"{where}: no audio (wav.scp says None)")
    require_complete(path, utt, str(scp))
    require_finite(wav, utt, str(scp))
    try:
        rec.check_audio(wav, fs)
    except ValueError as e:
        raise BadAudioError(f"{where}: {e}") from None
    return fs, wav


def _pct(values, q):
    """The ``q``-th percentile of ``values`` (ms, 3 decimals), None without values."""
    return round(float(np.percentile(values, q)), 3) if values else None


def stream_utterance(rec, wav: np.ndarray, fs: int, step: int) -> tuple[str, Optional[float], float]:
    """Stream one utterance ``step`` samples at a time: (final text, ms from the stream's start
    to the first non-empty partial with the audio fed at real time (None: no partial), compute
    seconds)."""
    rec.reset()
    tic = time.perf_counter()
    first = None
    for start in range(0, wav.shape[0], step):
        t0 = time.perf_counter()
        partial = rec.feed(wav[start : start + step], fs=fs)
        if first is None and partial:
            first = (min(start + step, wav.shape[0]) / fs + time.perf_counter() - t0) * 1000.0
    text = rec.finish()
    return text, first, time.perf_counter() - tic


def latency_report(rec, num_utterances: int, audio_s: float, compute_s: float, chunk_ms: list,
                   first_partial_ms: list, dropped: dict) -> dict:
    """``latency.json``'s content (see :func:`decode_data_dir`)."""
    lat = rec.latency()
    report = {
        "num_utterances": num_utterances,
        "audio_seconds": round(audio_s, 3),
        "compute_seconds": round(compute_s, 3),
        "rtf": round(compute_s / audio_s, 4) if audio_s else None,
        "num_threads": torch.get_num_threads(),
        "num_chunks": len(chunk_ms),
        "chunk_compute_ms_mean": round(float(np.mean(chunk_ms)), 3) if chunk_ms else None,
        "chunk_compute_ms_max": round(float(np.max(chunk_ms)), 3) if chunk_ms else None,
        "chunk_compute_ms_p50": _pct(chunk_ms, 50),
        "chunk_compute_ms_p95": _pct(chunk_ms, 95),
        "first_partial_ms_p50": _pct(first_partial_ms, 50),
        "first_partial_ms_p95": _pct(first_partial_ms, 95),
        "algorithmic_latency_ms": round(lat.total_ms, 3),
        "latency_parts_ms": {
            "chunk": round(lat.chunk_ms, 3),
            "lookahead": round(lat.lookahead_ms, 3),
            "frontend": round(lat.frontend_ms, 3),
        },
        "streaming": rec.cfg.to_dict(),
        "beam_size": rec.beam_size,
        "lm_weight": getattr(rec.search, "lm_weight", 0.0),
        "length_bonus": getattr(rec.search, "length_bonus", 0.0),
        "num_dropped": len(dropped),
        "dropped": dropped,
    }
    return report


def decode_data_dir(rec: StreamingRecognizer, data_dir: Union[str, Path],
                    output_dir: Union[str, Path], on_error: str = "fail",
                    endpoint: Optional[EndpointConfig] = None) -> dict:
    """Decode ``data_dir/wav.scp``; writes ``output_dir/{text,latency.json}``.

    Returns the ``latency.json`` content: real-time factor (compute / audio
    duration), per-chunk compute ms (mean, max, p50, p95), the first-partial
    latency (p50, p95 over utterances: ms from the stream's start, audio fed at
    real time, until the first non-empty partial text is out = the audio fed by
    then + that feed's compute), the algorithmic latency and its parts, the
    config, the search's LM weight and length bonus, the thread count, and the
    utterances dropped.

    ``on_error``: what a bad utterance (unreadable, no samples, cut short,
    NaN or inf samples, another sample rate than the model's, several
    channels) does. ``fail``:
    raises :class:`~espnet_omni.corpus.audio_check.BadAudioError` naming its
    id and file. ``drop``: it is left out of ``text`` (the scorer counts a
    missing hypothesis as empty: all its words deleted), logged with its id
    and reason, and counted at the end (``num_dropped``, ``dropped``: id ->
    reason, in ``latency.json``).

    ``endpoint``: cut each utterance into segments at endpoints
    (:class:`~espnet_omni.inference.segmenter.SegmentingRecognizer`, these rules);
    ``text`` holds its segments' texts joined by spaces, ``segments.txt`` one line
    per segment (``utt seg_index start end text``, seconds), ``latency.json`` the
    rules and the number of segments (``endpoint``). ``rec`` is taken over.

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
    seg_lines = []
    if endpoint is not None:  # endpointing: every utterance cut into segments (segments.txt)
        rec = SegmentingRecognizer(rec, endpoint)
    lines, chunk_ms, first_partial_ms = [], [], []
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
        text, first, seconds = stream_utterance(rec, wav, fs, step)
        if first is not None:
            first_partial_ms.append(first)
        compute_s += seconds
        audio_s += wav.shape[0] / fs
        chunk_ms += rec.chunk_ms
        lines.append(f"{utt} {text}".rstrip() + "\n")
        if endpoint is not None:
            seg_lines += segment_lines(utt, rec.segments())
    (output_dir / "text").write_text("".join(lines))
    if dropped:
        logger.warning("%s: dropped %d of %d utterances (not in %s; scoring counts their words as deleted)",
                       scp, len(dropped), len(reader), output_dir / "text")
    report = latency_report(rec, len(lines), audio_s, compute_s, chunk_ms, first_partial_ms, dropped)
    if endpoint is not None:
        (output_dir / "segments.txt").write_text("".join(seg_lines))
        report["endpoint"] = {**endpoint.to_dict(), "num_segments": len(seg_lines)}
    (output_dir / "latency.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
