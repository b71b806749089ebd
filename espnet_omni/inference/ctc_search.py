"""Incremental CTC decoding: greedy and prefix beam search, frame by frame.

Both take log-posteriors ``(T, V)`` (``numpy``) a chunk at a time; the
hypothesis after any chunk is the one a whole-utterance decode of the frames
so far would give. Token ``blank`` (0 in ESPnet) separates repeats.
"""

from __future__ import annotations

from typing import List, Tuple

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
        self.prefixes: List[Tuple[int, ...]] = [()]
        self.pb = np.zeros(1)  # log P(prefix, ends in blank)
        self.pt = np.full(1, NEG_INF)  # log P(prefix, ends in its last token)
        self.last = np.full(1, -1)  # last token of each prefix (-1: empty)

    def step(self, logp: np.ndarray) -> None:
        """Consume ``(T, V)`` log-posteriors.

        Per frame, every beam's three moves are arrays: stay on blank, continue its last token
        (when that token is a candidate), extend by each candidate (after a blank for its own
        last token). Only an extension that is already in the beam (``prefix + (c,)`` another
        beam's prefix) is merged one by one (at most one per beam), then the best ``beam_size``
        of all beams' stays and extensions survive (ties: stays first, then extensions in beam
        order).
        """
        logp = np.asarray(logp, dtype=np.float64)
        k = min(self.beam_size, logp.shape[-1])
        for frame in logp:
            cands = np.argpartition(-frame, k - 1)[:k]
            cands = np.sort(cands[cands != self.blank])  # (K,) candidate tokens
            pb, pt, last = self.pb, self.pt, self.last
            total = np.logaddexp(pb, pt)  # (B,)
            stay_b = total + frame[self.blank]
            cont = np.isin(last, cands)  # the last token is a candidate: it may continue
            stay_t = np.where(cont, pt + frame[np.maximum(last, 0)], NEG_INF)
            same = last[:, None] == cands[None, :]  # (B, K): a repeat needs a blank between
            ext = np.where(same, pb[:, None], total[:, None]) + frame[cands][None, :]
            merged = np.zeros(ext.shape, dtype=bool)
            if len(self.prefixes) > 1:  # an extension already in the beam joins that beam
                index = {p: i for i, p in enumerate(self.prefixes)}
                col = {int(c): j for j, c in enumerate(cands.tolist())}
                for q, prefix in enumerate(self.prefixes):
                    if prefix:
                        parent, j = index.get(prefix[:-1]), col.get(prefix[-1])
                        if parent is not None and j is not None:
                            stay_t[q] = np.logaddexp(stay_t[q], ext[parent, j])
                            merged[parent, j] = True
            b = len(self.prefixes)
            scores = np.concatenate([np.logaddexp(stay_b, stay_t), ext.ravel()])
            scores[b:][merged.ravel()] = np.nan  # merged into a stay: no candidate of their own
            live = np.flatnonzero(~np.isnan(scores))
            n = min(self.beam_size, live.size)
            top = live[np.argpartition(-scores[live], n - 1)[:n]] if n < live.size else live
            top = top[np.lexsort((top, -scores[top]))]  # best first, ties in beam order
            prefixes, new_b, new_t, new_last = [], [], [], []
            kk = cands.size
            for i in top.tolist():
                if i < b:
                    prefixes.append(self.prefixes[i])
                    new_b.append(stay_b[i]), new_t.append(stay_t[i]), new_last.append(last[i])
                else:
                    parent, j = divmod(i - b, kk)
                    c = int(cands[j])
                    prefixes.append(self.prefixes[parent] + (c,))
                    new_b.append(NEG_INF), new_t.append(ext[parent, j]), new_last.append(c)
            self.prefixes = prefixes
            self.pb, self.pt, self.last = np.array(new_b), np.array(new_t), np.array(new_last, dtype=np.int64)

    def nbest(self) -> List[Tuple[List[int], float]]:
        """Prefixes with their log-probabilities, best first."""
        scores = np.logaddexp(self.pb, self.pt)
        order = sorted(range(len(self.prefixes)), key=lambda i: -scores[i])
        return [(list(self.prefixes[i]), float(scores[i])) for i in order]

    def best(self) -> List[int]:
        return self.nbest()[0][0]


def make_ctc_search(beam_size: int, blank: int = 0):
    """``beam_size == 1``: greedy (best path); ``> 1``: prefix beam search."""
    if beam_size < 1:
        raise ValueError(f"beam_size={beam_size}: must be >= 1")
    return CTCGreedy(blank) if beam_size == 1 else CTCPrefixBeam(beam_size, blank)
