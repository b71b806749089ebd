"""Endpoint detection from CTC blank frames (WeNet's ``CtcEndpoint``, sherpa-onnx's endpoint rules).

A streaming recognizer decodes a long recording as a sequence of segments: an
*endpoint* closes the current segment (its final text), the recognizer is reset
and decoding goes on. CTC marks silence for free: a frame whose best token is
the blank is *silence*, any other frame is *speech*. :class:`Endpointer` is fed
one encoder frame at a time (silent or not, and its duration) and fires when
one of three rules of :class:`EndpointConfig` holds (any one suffices):

1. ``rule1_min_trailing_silence`` seconds of silence and no speech frame yet in
   the segment (a segment of silence or noise only: closed, and dropped since
   its text is empty);
2. ``rule2_min_trailing_silence`` seconds of silence after a speech frame (the
   speaker paused: the sentence ended);
3. the segment is ``rule3_max_segment_length`` seconds long, whatever its frames.

A rule set to ``None`` is off. Pure Python (no model):

>>> ep = Endpointer(EndpointConfig(rule2_min_trailing_silence=0.12))
>>> [ep.step(silent, 40.0) for silent in (True, False, True, True, True)]
[None, None, None, None, 2]
>>> ep.trailing_silence_ms, ep.segment_ms, ep.speech_frames
(120.0, 200.0, 1)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Optional, Sequence

import numpy as np

EPS_MS = 1e-6  # sums of float frame durations: 3 x 40.0 ms reaches 120 ms


@dataclass(frozen=True)
class EndpointConfig:
    """The endpoint rules (seconds; ``None`` turns a rule off).

    Attributes:
        rule1_min_trailing_silence: 5.0 s (WeNet's rule 1): a segment with no
            speech frame yet is closed after this much silence, so a long silence
            or noise (music, a muted microphone) neither grows the segment, and
            with it the encoder's left context, nor holds back the next one; long
            enough not to cut a speaker who starts late.
        rule2_min_trailing_silence: 0.6 s, shorter than WeNet's 1.0 s and
            sherpa-onnx's 1.2 s so that a 0.8 s pause between two sentences cuts:
            the blank run after a sentence's last token spike spans the pause plus
            the speech tail after the spike, so 0.6 s leaves about 0.2 s for the
            spikes' timing; pauses inside a sentence (commas, breaths) are mostly
            shorter, and a cut there costs little without an LM (both sides are
            decoded alone; with one, its end of sentence is scored once more).
        rule3_max_segment_length: 20.0 s (WeNet's and sherpa-onnx's rule 3): a
            segment is cut after this long even inside speech, which bounds the time
            to a final result, the cost and memory of an unlimited left context, and
            the positional table of an ONNX export (``max_frames``), and keeps
            segments near the lengths the model was trained on.
        blank_threshold: ``None``: a frame is silent when its argmax is the blank;
            a probability (WeNet's default is 0.8): silent when ``P(blank) >=`` it.
    """

    rule1_min_trailing_silence: Optional[float] = 5.0
    rule2_min_trailing_silence: Optional[float] = 0.6
    rule3_max_segment_length: Optional[float] = 20.0
    blank_threshold: Optional[float] = None

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"endpoint {f.name}={value!r}: expected a number (or null: rule off)")
            if f.name == "blank_threshold":
                if not 0.0 < value <= 1.0:
                    raise ValueError(f"endpoint blank_threshold={value}: expected a probability in (0, 1]")
            elif value <= 0:
                raise ValueError(f"endpoint {f.name}={value}: expected seconds > 0 (or null: rule off)")

    @classmethod
    def from_dict(cls, conf: Optional[dict]) -> "EndpointConfig":
        """From ``--endpoint_conf`` style ``{key: value}``.

        Raises:
            ValueError: an unknown key (naming the valid ones) or a bad value.
        """
        conf = dict(conf or {})
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(conf) - set(known))
        if unknown:
            raise ValueError(f"endpoint key(s) {', '.join(unknown)} unknown (valid: {', '.join(known)})")
        return cls(**conf)

    def to_dict(self) -> dict:
        return asdict(self)


class Endpointer:
    """Frame-by-frame endpoint detector of one segment (:class:`EndpointConfig`'s rules).

    Counts, since the last :meth:`reset`: the segment's length, the silence
    since its last speech frame (or its start), and its speech frames.
    """

    def __init__(self, config: Optional[EndpointConfig] = None):
        self.config = config or EndpointConfig()
        c = self.config
        self._ms = [None if s is None else 1000.0 * s for s in
                    (c.rule1_min_trailing_silence, c.rule2_min_trailing_silence, c.rule3_max_segment_length)]
        self.reset()

    def reset(self) -> None:
        """A new segment starts."""
        self.segment_ms = 0.0
        self.trailing_silence_ms = 0.0
        self.speech_frames = 0
        self.rule: Optional[int] = None  # what the last step returned

    def step(self, silent: bool, frame_ms: float) -> Optional[int]:
        """Count one frame (``silent``: its best CTC token is the blank) of ``frame_ms``
        milliseconds; returns the number (1, 2, 3) of the first rule that holds after it,
        or ``None``. The counts go on after an endpoint until :meth:`reset`."""
        self.segment_ms += frame_ms
        if silent:
            self.trailing_silence_ms += frame_ms
        else:
            self.trailing_silence_ms = 0.0
            self.speech_frames += 1
        self.rule = self._rule()
        return self.rule

    def _rule(self) -> Optional[int]:
        rule1, rule2, rule3 = self._ms
        if rule1 is not None and not self.speech_frames and self.trailing_silence_ms >= rule1 - EPS_MS:
            return 1
        if rule2 is not None and self.speech_frames and self.trailing_silence_ms >= rule2 - EPS_MS:
            return 2
        if rule3 is not None and self.segment_ms >= rule3 - EPS_MS:
            return 3
        return None

    def first_endpoint(self, silent: Sequence[bool], frame_ms: float) -> Optional[int]:
        """Step through ``silent`` (one flag per frame) up to the first endpoint; returns
        that frame's index, or ``None`` (all were counted).

        >>> Endpointer(EndpointConfig(rule3_max_segment_length=0.1)).first_endpoint([False] * 5, 40.0)
        2
        """
        for i, s in enumerate(silent):
            if self.step(bool(s), frame_ms) is not None:
                return i
        return None


def silent_frames(logp: np.ndarray, blank: int, blank_threshold: Optional[float] = None) -> np.ndarray:
    """``(T,)`` bool: which frames of ``(T, V)`` CTC log-posteriors are silence
    (:attr:`EndpointConfig.blank_threshold`: the blank is the argmax, or its probability is
    at least the threshold).

    >>> lp = np.log(np.array([[.9, .1], [.6, .4], [.3, .7]]))
    >>> silent_frames(lp, 0).tolist(), silent_frames(lp, 0, 0.8).tolist()
    ([True, True, False], [True, False, False])
    """
    if blank_threshold is None:
        return np.argmax(logp, axis=-1) == blank
    return logp[:, blank] >= np.log(blank_threshold)
