"""What an audio file holds, checked beyond its header.

* :func:`audio_problem` (the format stage): a file with no samples, a file
  cut short (a half-copied WAV: libsndfile shrinks the frame count to the
  bytes present and says nothing, so ``sf.info`` alone passes it with its
  full transcript; another format whose last frame cannot be read), and NaN
  or inf samples in a float file (a model turns them into an empty
  hypothesis, silently).
* :func:`require_complete` (decoding): the same checks on the file of one
  utterance (no samples, cut short), an error naming it.
* :func:`require_finite` (decoding): NaN or inf samples in a waveform, an
  error naming the utterance.
"""

from __future__ import annotations

import os
import struct
from typing import Optional, Tuple

import numpy as np
import soundfile as sf

# Bytes per sample of the WAV subtypes whose data chunk is plain samples.
_SAMPLE_BYTES = {"PCM_U8": 1, "PCM_S8": 1, "ULAW": 1, "ALAW": 1, "PCM_16": 2,
                 "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8}  # fmt: skip
FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")
_UNKNOWN_SIZE = 0x7FFF0000


class BadAudioError(ValueError):
    """Audio that must not be decoded; the message names the utterance."""


def wav_data_chunk(path: str) -> Optional[Tuple[int, int]]:
    """``(offset, declared bytes)`` of a RIFF/WAVE file's ``data`` chunk.

    ``None`` for a file that is not RIFF/WAVE or has no ``data`` chunk header.
    """
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:] != b"WAVE":
            return None
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            size = struct.unpack("<I", chunk[4:])[0]
            if chunk[:4] == b"data":
                return f.tell(), size
            f.seek(size + (size & 1), os.SEEK_CUR)  # chunks are padded to even sizes


def audio_problem(path: str, info, finite: bool = True) -> Optional[Tuple[str, str]]:
    """``(reason, message)`` of what is wrong with the samples of ``path``, or ``None``.

    ``info`` is ``sf.info(path)``. Reasons: ``empty_audio`` (no frames: a
    model decodes it to an empty text, or fails in its STFT), ``truncated`` (a
    WAV data chunk declares more bytes than follow its header; for other
    formats, the last frame the header declares cannot be read) and
    ``non_finite`` (a float file holds NaN or inf; the whole file is read;
    only with ``finite``).
    """
    if info.frames <= 0:
        return "empty_audio", f"{path} has no samples; expected speech"
    frame_bytes = info.channels * _SAMPLE_BYTES.get(info.subtype, 0)
    data = wav_data_chunk(path)
    if data is not None:
        offset, declared = data
        present = os.path.getsize(path) - offset
        # 0 or >= 2 GiB: "length unknown" (a writer to a pipe cannot go back to fill
        # it in: ffmpeg writes 0xFFFFFFFF), nothing to compare; no utterance is 2 GiB.
        if 0 < declared < _UNKNOWN_SIZE and present < declared:
            frames = ""
            if frame_bytes:
                frames = (f" ({declared // frame_bytes} frames, "
                          f"{declared / frame_bytes / info.samplerate:.2f} s; "
                          f"present: {present // frame_bytes} frames)")  # fmt: skip
            return "truncated", (
                f"{path} is truncated: its data chunk declares {declared} bytes of samples but "
                f"only {present} follow the header{frames}; expected a complete file "
                f"(an interrupted copy?)"
            )
    else:
        try:
            with sf.SoundFile(path) as f:
                f.seek(info.frames - 1)
                ok = len(f.read(1)) == 1
        except Exception as e:  # libsndfile raises several types for a cut stream
            ok, why = False, f" ({e})"
        else:
            why = ""
        if not ok:
            return "truncated", (
                f"{path} is truncated: its header declares {info.frames} frames but the last "
                f"one cannot be read{why}; expected a complete file (an interrupted copy?)"
            )
    if finite and info.subtype in FLOAT_SUBTYPES:
        x, _ = sf.read(path, dtype="float64" if info.subtype == "DOUBLE" else "float32")
        bad = np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))
        if bad.size:
            return "non_finite", (
                f"{path} holds NaN or inf samples in {bad.size} of {len(x)} frames (the "
                f"first at {bad[0] / info.samplerate:.3f} s); expected finite audio"
            )
    return None


def require_finite(audio, utt: str, where: str = "") -> None:
    """Raise :class:`BadAudioError` naming ``utt`` (and ``where``) when ``audio``
    (a numpy array or CPU tensor) holds NaN or inf samples."""
    x = np.asarray(audio)
    finite = np.isfinite(x)
    if not finite.all():
        at = f" in {where}" if where else ""
        raise BadAudioError(
            f"utterance {utt!r}{at}: {int(x.size - finite.sum())} NaN or inf samples "
            f"(the first at sample {int(np.flatnonzero(~finite.ravel())[0])}); expected finite "
            f"audio: fix or remove it (ESPnet would decode it to an empty text)"
        )


def require_complete(path: str, utt: str, where: str = "") -> None:
    """Raise :class:`BadAudioError` naming ``utt`` (and ``where``, e.g. its
    ``wav.scp``) when the audio file ``path`` has no samples or is cut short
    (:func:`audio_problem`; libsndfile would hand a decoder the part present
    as if whole), or when ``sf.info`` cannot read it. NaN and inf are left to
    :func:`require_finite` on the waveform already read (no second read)."""
    at = f" in {where}" if where else ""
    try:
        info = sf.info(path)
    except Exception as e:  # soundfile raises several types for unreadable files
        raise BadAudioError(f"utterance {utt!r}{at}: {path} is unreadable ({e}); expected wav/flac audio") from None
    problem = audio_problem(path, info, finite=False)
    if problem is not None:
        raise BadAudioError(f"utterance {utt!r}{at}: {problem[1]}")
