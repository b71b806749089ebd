"""A Kaldi-style dev set loaded once and cut into padded batches by length.

Scoring a sub-network decodes the same dev set many times, so the audio is
read once (ESPnet's ``SoundScpReader``, float32, paths relative to the
working directory as in ESPnet), passed through the task's inference
preprocessor (``build_preprocess_fn(args, train=False)``: the same speech
and text processing as ``asr_inference``), sorted by length and padded into
batches that are kept in memory (float32: ~230 MB per hour of 16 kHz audio).

Usage::

    dev = load_dev_set("dump/raw/dev", preprocess, max_utts=200)
    batches = make_batches(dev, batch_seconds=60.0, fs=16000)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from espnet2.fileio.sound_scp import SoundScpReader
from tqdm import tqdm

from espnet_omni.corpus.audio_check import require_finite
from espnet_omni.corpus.datadir import read_kv

logger = logging.getLogger(__name__)

# ESPnet's collate pads token ids with -1 (its ``int_pad_value``).
TEXT_PAD = -1

Preprocess = Callable[[str, dict], dict]


@dataclass
class Utterance:
    """One dev utterance.

    Attributes:
        uid: utterance id (the key in ``wav.scp`` and ``text``).
        text: reference transcript as written in ``text``.
        speech: waveform ``(T,)`` float32, after the preprocessor.
        text_ids: reference token ids ``(L,)`` from the preprocessor, or
            None when the config has no preprocessor (``use_preprocessor:
            false``); the ``loss`` metric needs them.
    """

    uid: str
    text: str
    speech: np.ndarray
    text_ids: np.ndarray | None


@dataclass
class Batch:
    """Utterances of similar length, padded.

    Attributes:
        uids: utterance ids, longest first.
        speech: ``(B, T_max)`` float32, zero padded.
        speech_lengths: ``(B,)`` int64 samples.
        text_ids: ``(B, L_max)`` int64 padded with -1, or None.
        text_lengths: ``(B,)`` int64, or None.
    """

    uids: list[str]
    speech: torch.Tensor
    speech_lengths: torch.Tensor
    text_ids: torch.Tensor | None
    text_lengths: torch.Tensor | None

    def to(self, device: torch.device | str) -> "Batch":
        """The batch with every tensor on ``device``."""
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Batch(self.uids, move(self.speech), move(self.speech_lengths),
                     move(self.text_ids), move(self.text_lengths))


def _read_table(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: a dev data dir needs wav.scp and text")
    return read_kv(path)


def load_dev_set(
    data_dir: str | Path,
    preprocess: Preprocess | None = None,
    max_utts: int | None = None,
    progress: bool = False,
) -> list[Utterance]:
    """Read ``data_dir/{wav.scp,text}`` (same keys) into memory.

    Args:
        data_dir: Kaldi-style dir; ``segments`` is not supported (ESPnet's
            ``dump/raw/<set>`` has none).
        preprocess: ``fn(uid, {"speech", "text"}) -> dict`` (ESPnet's
            preprocessor); None keeps the raw audio and no token ids.
        max_utts: keep N utterances spread evenly over ``wav.scp`` (the
            i-th kept one is utterance ``floor(i * total / N)``), so a subset
            of a speaker-sorted dev set still holds every speaker (None: all).
        progress: tqdm bar over the utterances.

    Raises :class:`~espnet_omni.corpus.audio_check.BadAudioError` naming an
    utterance whose audio holds NaN or inf, ``ValueError`` for other bad input.
    """
    data_dir = Path(data_dir)
    if max_utts is not None and max_utts < 1:
        raise ValueError(f"max_utts={max_utts} must be >= 1 (or None for all)")
    if (data_dir / "segments").exists():
        raise ValueError(f"{data_dir}/segments: segmented data dirs are not supported; "
                         "dump the audio per utterance first (ESPnet format_wav_scp)")
    wavs, texts = _read_table(data_dir / "wav.scp"), _read_table(data_dir / "text")
    missing = [u for u in wavs if u not in texts]
    extra = [u for u in texts if u not in wavs]
    if missing or extra:
        raise ValueError(f"{data_dir}: wav.scp and text keys differ: "
                         f"{len(missing)} without text (e.g. {missing[:3]}), "
                         f"{len(extra)} without audio (e.g. {extra[:3]})")
    if not wavs:
        raise ValueError(f"{data_dir}/wav.scp is empty")
    uids = list(wavs)
    if max_utts is not None and max_utts < len(uids):
        uids = [uids[i * len(uids) // max_utts] for i in range(max_utts)]
    reader = SoundScpReader(str(data_dir / "wav.scp"), dtype="float32", always_2d=False)
    utts, rates = [], set()
    for uid in tqdm(uids, desc=f"load {data_dir}", unit="utt", disable=not progress):
        rate, speech = reader[uid]
        require_finite(speech, uid, f"{data_dir}/wav.scp")
        if speech.ndim != 1:
            raise ValueError(f"{data_dir}/wav.scp: {uid} has shape {speech.shape}; "
                             "only mono audio is supported")
        rates.add(rate)
        data = {"speech": speech, "text": texts[uid]}
        if preprocess is not None:
            data = preprocess(uid, data)
        ids = data["text"] if preprocess is not None else None
        utts.append(Utterance(
            uid, texts[uid], np.asarray(data["speech"], dtype=np.float32),
            None if ids is None else np.asarray(ids, dtype=np.int64),
        ))
    if len(rates) > 1:
        raise ValueError(f"{data_dir}/wav.scp mixes sampling rates {sorted(rates)}")
    logger.info("loaded %d utterances (%.1f s) from %s", len(utts),
                sum(len(u.speech) for u in utts) / rates.pop(), data_dir)
    return utts


def plan_batches(lengths: Sequence[int], max_padded: int) -> list[list[int]]:
    """Group indices longest first so that ``len(group) * longest <= max_padded``.

    A single utterance longer than ``max_padded`` gets a batch of its own.

    >>> plan_batches([3, 10, 4, 9], max_padded=20)
    [[1, 3], [2, 0]]
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    groups: list[list[int]] = []
    for i in order:
        # Sorted longest first: the group's first member is its longest.
        if groups and (len(groups[-1]) + 1) * lengths[groups[-1][0]] <= max_padded:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _pad(arrays: Sequence[np.ndarray], value: float | int, dtype: torch.dtype) -> torch.Tensor:
    out = torch.full((len(arrays), max(len(a) for a in arrays)), value, dtype=dtype)
    for row, a in enumerate(arrays):
        out[row, : len(a)] = torch.from_numpy(a)
    return out


def make_batches(utts: Sequence[Utterance], batch_seconds: float, fs: int) -> list[Batch]:
    """Padded batches of at most ``batch_seconds`` of padded audio each.

    Args:
        utts: from :func:`load_dev_set`.
        batch_seconds: cap on ``batch_size * longest`` in seconds (memory and
            padding waste both grow with it).
        fs: sampling rate (Hz) the seconds refer to.
    """
    if not batch_seconds > 0:
        raise ValueError(f"batch_seconds={batch_seconds} must be > 0")
    groups = plan_batches([len(u.speech) for u in utts], int(batch_seconds * fs))
    batches = []
    for group in groups:
        members = [utts[i] for i in group]
        has_ids = all(u.text_ids is not None for u in members)
        batches.append(Batch(
            uids=[u.uid for u in members],
            speech=_pad([u.speech for u in members], 0.0, torch.float32),
            speech_lengths=torch.tensor([len(u.speech) for u in members]),
            text_ids=_pad([u.text_ids for u in members], TEXT_PAD, torch.int64)
            if has_ids else None,
            text_lengths=torch.tensor([len(u.text_ids) for u in members]) if has_ids else None,
        ))
    return batches
