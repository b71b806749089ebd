"""One connection's recognition: PCM16 bytes in, partial text and closed segments out.

The server (:mod:`espnet_omni.serve.server`) holds one :class:`Stream` per connection, made
from the server's recognizer by ``spawn()`` (shared weights or ONNX sessions, state of its
own), and runs :meth:`Stream.feed` / :meth:`Stream.finish` in its worker pool. The text it
gives equals the offline chunk-by-chunk decode of the same samples
(``asr_inference_streaming``): a recognizer's output does not depend on how the audio is cut
into pieces.

Usage::

    s = Stream(recognizer.spawn())
    update = s.feed(pcm16_bytes)       # Update(partial, segment index, finals closed meanwhile)
    update = s.finish()                # the last finals; update.text: the stream's text
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional

import numpy as np

from espnet_omni.inference.segmenter import Segment, SegmentingRecognizer


class AudioFormatError(ValueError):
    """Bytes that are not this stream's PCM16 audio; the message says what was expected."""


def pcm16_samples(data: bytes) -> np.ndarray:
    """``(n,)`` float32 samples in [-1, 1) of little-endian 16-bit mono PCM (what
    ``soundfile`` reads from a PCM16 wav as float32: ``int16 / 32768``).

    >>> pcm16_samples(bytes([0, 0x80, 0, 0x40])).tolist()
    [-1.0, 0.5]

    Raises:
        AudioFormatError: an odd number of bytes (not 16-bit samples).
    """
    if len(data) % 2:
        raise AudioFormatError(f"a binary message of {len(data)} bytes: PCM16 audio has 2 bytes per sample "
                               "(little-endian int16, mono)")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


class Update(NamedTuple):
    """What a feed or finish changed.

    Attributes:
        partial: the open segment's text so far ("" after finish).
        segment: the open segment's index (segments closed so far).
        finals: the segments closed by this call, in order, with their indices.
        received: samples received on the stream so far.
        text: after finish: the stream's text (its segments' texts joined); None before.
    """

    partial: str
    segment: int
    finals: List[tuple]
    received: int
    text: Optional[str] = None


class Stream:
    """A recognizer fed with PCM16 bytes.

    Args:
        rec: a recognizer of its own (``StreamingRecognizer``, ``OnnxStreamingRecognizer``,
            or a :class:`~espnet_omni.inference.segmenter.SegmentingRecognizer` around one:
            segments closed at endpoints). Without endpointing the whole stream is one
            segment, closed by :meth:`finish`.
    """

    def __init__(self, rec):
        self.rec = rec
        self.segmenting = isinstance(rec, SegmentingRecognizer)
        self.fs = rec.fs
        self.received = 0
        self.sent = 0  # segments reported closed
        self.text: Optional[str] = None

    def _segments(self) -> List[Segment]:
        return self.rec.segments() if self.segmenting else []

    def _new_finals(self, segments: List[Segment]) -> List[tuple]:
        out = [(i, s) for i, s in enumerate(segments) if i >= self.sent]
        self.sent = len(segments)
        return out

    def feed(self, data: bytes) -> Update:
        """Decode a binary message of PCM16 samples.

        Raises:
            AudioFormatError: not PCM16 (see :func:`pcm16_samples`).
            RuntimeError: after :meth:`finish`.
        """
        if self.text is not None:
            raise RuntimeError("audio after the end of the stream")
        samples = pcm16_samples(data)
        self.received += samples.size
        partial = self.rec.feed(samples, self.fs)
        finals = self._new_finals(self._segments())
        return Update(partial, self.sent, finals, self.received)

    def finish(self) -> Update:
        """End of the audio: the last segment(s) closed; ``text`` is the stream's text."""
        if self.text is None:
            self.text = self.rec.finish()
        if self.segmenting:
            finals = self._new_finals(self._segments())
        else:  # one segment: the whole stream
            whole = [Segment(0.0, self.received / self.fs, self.text)] if self.text else []
            finals = self._new_finals(whole)
        return Update("", self.sent, finals, self.received, self.text)
