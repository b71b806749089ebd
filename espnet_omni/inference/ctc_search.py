"""Incremental CTC decoding: greedy and prefix beam search, frame by frame.

Both take log-posteriors ``(T, V)`` (``numpy``) a chunk at a time; the
hypothesis after any chunk is the one a whole-utterance decode of the frames
so far would give. Token ``blank`` (0 in ESPnet) separates repeats.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np

NEG_INF = -np.inf


class CTCGreedy:
    """Best path: argmax per frame, repeats collapsed, blanks removed.

    >>> g = CTCGreedy()
    >>> lp = np.log(np.array([[.1, .9, 0], [.1, .9, 0], [.8, .1, .1]]) + 1e-9)
    >>> g.step(lp); g.step(lp[:1]); g.best()
    [1, 1]
    """

    def __init__(self, blank: int = 0):
        self.blank = blank
        self.reset()

    def reset(self) -> None:
        self.tokens: List[int] = []
        self.last = self.blank  # previous frame's argmax (collapses repeats)

    def step(self, logp: np.ndarray) -> None:
        """Consume ``(T, V)`` log-posteriors."""
        for tok in np.argmax(logp, axis=-1).tolist():
            if tok != self.blank and tok != self.last:
                self.tokens.append(tok)
            self.last = tok

    def best(self) -> List[int]:
        return list(self.tokens)


class CTCPrefixBeam:
    """CTC prefix beam search (Hannun et al. 2014), no language model.

    Each prefix keeps two log-probabilities: ending in blank and ending in
    its last token. Per frame only the ``beam_size`` most likely tokens
    (plus blank) extend prefixes; the ``beam_size`` best prefixes survive.

    Unlike the best path, it sums the paths of a prefix:

    >>> lp = np.log(np.array([[.6, .4], [.6, .4]]))  # (T, V): blank, "1"
    >>> g = CTCGreedy(); g.step(lp); g.best()  # blank-blank: 0.36
    []
    >>> b = CTCPrefixBeam(beam_size=2); b.step(lp); b.best()  # 3 paths: 0.64
    [1]
    """

    def __init__(self, beam_size: int, blank: int = 0):
        if beam_size < 1:
            raise ValueError(f"beam_size={beam_size}: must be >= 1")
        self.beam_size, self.blank = beam_size, blank
        self.reset()

    def reset(self) -> None:
        # prefix -> (log P(ends in blank), log P(ends in a token))
        self.beams: Dict[Tuple[int, ...], Tuple[float, float]] = {(): (0.0, NEG_INF)}

    def step(self, logp: np.ndarray) -> None:
        """Consume ``(T, V)`` log-posteriors."""
        k = min(self.beam_size, logp.shape[-1])
        for frame in logp:
            cands = [int(c) for c in np.argpartition(-frame, k - 1)[:k] if c != self.blank]
            nxt: Dict[Tuple[int, ...], List[float]] = {}

            def add(prefix, blank_p, tok_p):
                b, t = nxt.get(prefix, (NEG_INF, NEG_INF))
                nxt[prefix] = [np.logaddexp(b, blank_p), np.logaddexp(t, tok_p)]

            for prefix, (pb, pt) in self.beams.items():
                total = np.logaddexp(pb, pt)
                add(prefix, total + frame[self.blank], NEG_INF)
                for c in cands:
                    lp = frame[c]
                    if prefix and prefix[-1] == c:
                        add(prefix + (c,), NEG_INF, pb + lp)  # repeat after a blank
                        add(prefix, NEG_INF, pt + lp)  # the same token continues
                    else:
                        add(prefix + (c,), NEG_INF, total + lp)
            ranked = sorted(nxt.items(), key=lambda kv: -np.logaddexp(*kv[1]))
            self.beams = {p: (float(b), float(t)) for p, (b, t) in ranked[: self.beam_size]}

    def nbest(self) -> List[Tuple[List[int], float]]:
        """Prefixes with their log-probabilities, best first."""
        ranked = sorted(self.beams.items(), key=lambda kv: -np.logaddexp(*kv[1]))
        return [(list(p), float(np.logaddexp(*s))) for p, s in ranked]

    def best(self) -> List[int]:
        return self.nbest()[0][0]


def make_ctc_search(beam_size: int, blank: int = 0):
    """``beam_size == 1``: greedy (best path); ``> 1``: prefix beam search."""
    if beam_size < 1:
        raise ValueError(f"beam_size={beam_size}: must be >= 1")
    return CTCGreedy(blank) if beam_size == 1 else CTCPrefixBeam(beam_size, blank)
