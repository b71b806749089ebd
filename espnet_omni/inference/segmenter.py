"""A long recording through a streaming recognizer, cut into segments at endpoints.

Usage::

    seg = SegmentingRecognizer(StreamingRecognizer.from_files(...), EndpointConfig())
    for piece in pieces:                  # np.ndarray (samples,), any sizes
        partial = seg.feed(piece)         # the current segment's partial text
    seg.finish()                          # closes the last segment
    for start_s, end_s, text in seg.segments():
        ...

Either recognizer works (:class:`~espnet_omni.inference.streaming_recognizer.StreamingRecognizer`,
:class:`~espnet_omni.inference.onnx_recognizer.OnnxStreamingRecognizer`; CTC, not a transducer).
The audio goes in one encoder chunk (``chunk_samples()``) at a time. Every CTC
frame the search gets is also counted by an :class:`~espnet_omni.inference.endpoint.Endpointer`
(silent = blank); at an endpoint, at frame ``k`` of the segment:

* the search stops at frame ``k``: the frames after it in the same chunk go to the
  next segment, not this one (the recognizer's search is wrapped for that);
* the segment is finished (its final text, with the LM's end of sentence when
  the search has an LM) and ends at sample ``start + (k + 1) * frame_samples``
  (the cut; ``frame_samples``: audio samples per encoder frame);
* the recognizer is reset (front end, encoder caches, search) and the audio
  from the cut on, fed already (at most a chunk plus the look-ahead), is fed
  again: the next segment is decoded exactly as if it were a recording of its own.

Segments whose text is empty (silence) are dropped. ``trim=True`` gives each
segment's speech span instead (from its first to its last non-blank frame: CTC
spikes, so it starts a little after the speech and may end before it).
"""

from __future__ import annotations

import copy
from typing import List, NamedTuple, Optional

import numpy as np

from espnet_omni.inference.endpoint import EndpointConfig, Endpointer, silent_frames


class Segment(NamedTuple):
    """One closed segment: seconds from the stream's start, and its final text."""

    start: float
    end: float
    text: str


class EndpointGate:
    """A CTC search (``step``, ``best``, ... of :mod:`~espnet_omni.inference.ctc_decoder`)
    stepped only up to the segment's endpoint.

    The recognizer steps it with each chunk's ``(m, V)`` log-posteriors; it counts
    every frame in its :class:`Endpointer` and passes the frames up to and including
    the endpoint frame on to the search; after that (``cut`` set) it drops frames until
    :meth:`reset`. Everything else (``best``, ``finalize``, ``nbest``) is the search's.
    """

    def __init__(self, search, blank: int, config: EndpointConfig, frame_ms: float):
        self.inner = search
        self.blank, self.config, self.frame_ms = blank, config, frame_ms
        self.endpointer = Endpointer(config)
        self.reset()

    def reset(self) -> None:
        self.inner.reset()
        self.endpointer.reset()
        self.frames = 0  # frames of the segment passed on to the search
        self.cut: Optional[int] = None  # frames of the segment once an endpoint is reached
        self.speech: Optional[List[int]] = None  # [first, last] non-blank frame of the segment

    def step(self, logp: np.ndarray) -> None:
        """Count ``(m, V)`` log-posteriors; the search gets those up to an endpoint."""
        if self.cut is not None or not len(logp):
            return
        silent = silent_frames(logp, self.blank, self.config.blank_threshold)  # (m,)
        end = self.endpointer.first_endpoint(silent, self.frame_ms)
        n = len(logp) if end is None else end + 1
        speech = self.frames + np.flatnonzero(~silent[:n])
        if speech.size:
            self.speech = [int(speech[0]) if self.speech is None else self.speech[0], int(speech[-1])]
        self.inner.step(logp[:n])
        self.frames += n
        if end is not None:
            self.cut = self.frames

    def __getattr__(self, name):  # best, nbest, finalize (if the search has it), ...
        if name == "inner":  # not set yet (copy, pickle)
            raise AttributeError(name)
        return getattr(self.inner, name)


class SegmentingRecognizer:
    """Endpointing around a streaming recognizer: the ``feed`` / ``finish`` / ``reset`` API,
    the stream cut into :class:`Segment` s (see the module docstring).

    Args:
        rec: a CTC ``StreamingRecognizer`` or ``OnnxStreamingRecognizer``; taken over
            (its ``search`` is wrapped in an :class:`EndpointGate`).
        config: the endpoint rules (default: :class:`EndpointConfig`'s).
        trim: segment times span the speech (first to last non-blank frame) instead
            of the cuts.

    Raises:
        NotImplementedError: a transducer recognizer (no CTC blank frames to count).
    """

    def __init__(self, rec, config: Optional[EndpointConfig] = None, trim: bool = False):
        if getattr(rec, "transducer", False):
            raise NotImplementedError("endpointing counts CTC blank frames; a transducer model has no CTC "
                                      "posteriors in the streaming recognizer: decode it without --endpoint")
        self.rec, self.config, self.trim = rec, config or EndpointConfig(), trim
        self.frame_samples = rec.chunk_samples() // rec.cfg.chunk_size  # audio samples per encoder frame
        search = rec.search.inner if isinstance(rec.search, EndpointGate) else rec.search
        self.gate = EndpointGate(search, rec.blank_id, self.config, 1000.0 * self.frame_samples / rec.fs)
        rec.search = self.gate
        self.reset()

    # --------------------------------------------------- the recognizer's API
    @property
    def fs(self) -> int:
        return self.rec.fs

    @property
    def cfg(self):
        return self.rec.cfg

    @property
    def beam_size(self) -> int:
        return self.rec.beam_size

    @property
    def search(self) -> EndpointGate:
        return self.gate

    @property
    def chunk_ms(self) -> List[float]:
        """Compute ms per encoder chunk of the stream, every segment's (re-fed audio included)."""
        return self._chunk_ms + self.rec.chunk_ms

    def chunk_samples(self) -> int:
        return self.rec.chunk_samples()

    def check_audio(self, audio: np.ndarray, fs: int) -> np.ndarray:
        return self.rec.check_audio(audio, fs)

    def latency(self):
        return self.rec.latency()

    def spawn(self) -> "SegmentingRecognizer":
        """The same endpointing over a recognizer of its own stream (``rec.spawn()``: shared
        weights, own state)."""
        rec = self.rec.spawn()
        rec.search = copy.copy(self.gate.inner)
        return SegmentingRecognizer(rec, self.config, self.trim)

    # ------------------------------------------------------------- streaming
    def reset(self) -> None:
        """Start a new stream (no segments)."""
        self.rec.reset()
        self.audio = np.zeros(0, np.float32)  # the stream's samples from self.offset on
        self.offset = 0
        self.total = 0  # samples received
        self.fed = 0  # samples fed to the recognizer (since self.seg_start)
        self.seg_start = 0  # sample where the current segment began
        self._segments: List[Segment] = []
        self._chunk_ms: List[float] = []
        self._partial = ""
        self._final: Optional[str] = None

    def feed(self, audio_chunk: np.ndarray, fs: int = 16000) -> str:
        """Add ``(samples,)`` float audio; returns the current segment's partial text."""
        if self._final is not None:
            raise RuntimeError("feed() after finish(): call reset() first")
        audio = self.check_audio(audio_chunk, fs)
        self.audio = np.concatenate([self.audio, audio.astype(np.float32)])
        self.total += audio.size
        self._run()
        return self._partial

    def finish(self) -> str:
        """Close the last segment; returns the stream's text (its segments' texts joined by spaces).
        The recognizer keeps the last segment's state (``posteriors()``, ...) until :meth:`reset`."""
        if self._final is None:
            while True:
                self.rec.finish()  # the last frames may reach an endpoint too
                cut = self._cut_sample()
                if cut is None or cut >= self.total:
                    break
                self._close(cut)
                self._run()
            self._close(self.total, reset=False)  # the recognizer keeps the last segment's state
            self._final = " ".join(s.text for s in self._segments)
        return self._final

    def segments(self) -> List[Segment]:
        """The closed segments so far, ``(start_s, end_s, text)`` in stream order."""
        return list(self._segments)

    # ------------------------------------------------------------- internals
    def _run(self) -> None:
        """Feed the received audio chunk by chunk, closing a segment at each endpoint."""
        step = self.rec.chunk_samples()
        while self.fed < self.total:
            stop = min(self.total, self.fed + step)
            self._partial = self.rec.feed(self.audio[self.fed - self.offset : stop - self.offset], self.fs)
            self.fed = stop
            cut = self._cut_sample()
            if cut is not None:
                self._close(cut)  # then the audio from the cut on is fed again
            # no later cut can precede the end of a frame the search has seen
            keep = min(self.fed, self.seg_start + self.gate.frames * self.frame_samples)
            self.audio, self.offset = self.audio[keep - self.offset :], keep

    def _cut_sample(self) -> Optional[int]:
        """The stream sample where the endpoint cuts (the end of its frame), or None."""
        if self.gate.cut is None:
            return None
        return min(self.fed, self.seg_start + self.gate.cut * self.frame_samples)

    def _close(self, end: int, reset: bool = True) -> None:
        """Finish the current segment at sample ``end``; ``reset``: the recognizer, for the next
        segment, which starts there."""
        text = self.rec.finish()
        if text:
            start, stop = self.seg_start, end
            if self.trim and self.gate.speech is not None:
                first, last = self.gate.speech
                start = self.seg_start + first * self.frame_samples
                stop = min(end, self.seg_start + (last + 1) * self.frame_samples)
            self._segments.append(Segment(start / self.fs, stop / self.fs, text))
        if reset:
            self._chunk_ms += self.rec.chunk_ms
            self.rec.reset()
            self.seg_start = self.fed = end
            self._partial = ""


def segment_lines(utt: str, segments: List[Segment]) -> List[str]:
    """``segments.txt`` lines of one utterance: ``utt seg_index start end text`` (seconds, 3 decimals).

    >>> segment_lines("u1", [Segment(0.0, 1.24, "hello world"), Segment(1.24, 2.5, "bye")])
    ['u1 0 0.000 1.240 hello world\\n', 'u1 1 1.240 2.500 bye\\n']
    """
    return [f"{utt} {i} {s.start:.3f} {s.end:.3f} {s.text}\n" for i, s in enumerate(segments)]
