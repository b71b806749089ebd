"""Incremental CTC decoding: greedy, prefix beam search, and prefix beam search with LM
shallow fusion, frame by frame.

All take log-posteriors ``(T, V)`` (``numpy``) a chunk at a time; the
hypothesis after any chunk is the one a whole-utterance decode of the frames
so far would give. Token ``blank`` (0 in ESPnet) separates repeats.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from espnet_omni.inference.lm_scorer import FusedBeam, LMScorer, LMState

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


class CTCPrefixBeamLM(FusedBeam):
    """CTC prefix beam search with shallow fusion of a token LM, frame-synchronous.

    Each prefix keeps its CTC log-probabilities (ending in blank ``pb``, in its last token
    ``pt``) and, apart, its fusion score ``lm_weight * log p_lm(prefix) + length_bonus *
    len(prefix)``; prefixes are ranked by the sum, the score of ESPnet's CTC + LM beam search
    (``conf/decode_ctc_lm.yaml``: ``ctc_weight: 1.0``, ``lm_weight``, ``penalty``). Per frame
    the ``token_beam`` tokens most likely under CTC extend every prefix, the LM's log-probability
    of each extension is read off its parent's :class:`~espnet_omni.inference.lm_scorer.LMState`,
    and the ``beam_size`` best prefixes survive; the new ones among them go through the LM in
    one batched call. :meth:`finalize` adds ``lm_weight * log p_lm(<eos> | prefix)`` (the end of
    the sentence) and re-ranks, as the full-utterance search scores a finished hypothesis.

    Without an LM (``lm=None``) it is a plain prefix beam search with a length bonus.

    Args:
        beam_size: prefixes kept per frame.
        lm: the LM (:class:`~espnet_omni.inference.lm_scorer.TorchLM` or ``OnnxLM``), or None.
        lm_weight: its weight (ESPnet's ``lm_weight``).
        length_bonus: added per token (ESPnet's ``penalty``).
        blank: the blank id.
        token_beam: tokens tried per frame (default ``beam_size``).
    """

    def __init__(self, beam_size: int, lm: Optional[LMScorer] = None, lm_weight: float = 0.0,
                 length_bonus: float = 0.0, blank: int = 0, token_beam: Optional[int] = None):
        if beam_size < 1:
            raise ValueError(f"beam_size={beam_size}: must be >= 1")
        if lm is None and lm_weight:
            raise ValueError(f"lm_weight={lm_weight} without an LM: give the LM (--lm_train_config, "
                             "--lm_file) or lm_weight 0")
        self.beam_size, self.blank = beam_size, blank
        self.token_beam = beam_size if token_beam is None else token_beam
        if self.token_beam < 1:
            raise ValueError(f"token_beam={token_beam}: must be >= 1")
        self.lm, self.lm_weight, self.length_bonus = lm, float(lm_weight), float(length_bonus)
        self.reset()

    def reset(self) -> None:
        """Start a new utterance."""
        self.prefixes: List[Tuple[int, ...]] = [()]
        self.pb = np.zeros(1)  # (B,) log P_ctc(prefix, ends in blank)
        self.pt = np.full(1, NEG_INF)  # (B,) log P_ctc(prefix, ends in its last token)
        self.last = np.full(1, -1)  # (B,) last token of each prefix (-1: empty)
        self.fusion = np.zeros(1)  # (B,) lm_weight * log p_lm(prefix) + length_bonus * len
        self.lm_states: List[Optional[LMState]] = [self.lm.start() if self.lm is not None else None]
        self.finalized = False

    def _lm_logp(self) -> Optional[np.ndarray]:
        """(B, V) next-token LM log-probabilities of the beam's prefixes."""
        if self.lm is None:
            return None
        return np.stack([s.logp for s in self.lm_states]).astype(np.float64)

    def step(self, logp: np.ndarray) -> None:
        """Consume ``(T, V)`` CTC log-posteriors."""
        if self.finalized:
            raise RuntimeError("step() after finalize(): call reset() first")
        logp = np.asarray(logp, dtype=np.float64)
        for frame in logp:
            self._frame(frame)

    def _frame(self, frame: np.ndarray) -> None:
        k = min(self.token_beam, frame.shape[-1])
        cands = np.argpartition(-frame, k - 1)[:k]
        cands = np.sort(cands[cands != self.blank])  # (K,) candidate tokens
        pb, pt, last, b = self.pb, self.pt, self.last, len(self.prefixes)
        total = np.logaddexp(pb, pt)  # (B,)
        stay_b = total + frame[self.blank]
        stay_t = np.where(last >= 0, pt + frame[np.maximum(last, 0)], NEG_INF)
        same = last[:, None] == cands[None, :]  # (B, K): a repeat needs a blank between
        ext = np.where(same, pb[:, None], total[:, None]) + frame[cands][None, :]  # (B, K) CTC
        ext_fusion = np.broadcast_to(self.fusion[:, None] + self.length_bonus, ext.shape).copy()
        lm_logp = self._lm_logp()
        if lm_logp is not None:
            ext_fusion += self.lm_weight * lm_logp[:, cands]
        merged = np.zeros(ext.shape, dtype=bool)
        if b > 1:  # an extension already in the beam adds its paths to that beam
            index = {p: i for i, p in enumerate(self.prefixes)}
            col = {int(c): j for j, c in enumerate(cands.tolist())}
            for q, prefix in enumerate(self.prefixes):
                if prefix:
                    parent, j = index.get(prefix[:-1]), col.get(prefix[-1])
                    if parent is not None and j is not None:
                        stay_t[q] = np.logaddexp(stay_t[q], ext[parent, j])
                        merged[parent, j] = True
        stay = np.logaddexp(stay_b, stay_t)
        scores = np.concatenate([stay + self.fusion, np.where(merged, NEG_INF, ext + ext_fusion).ravel()])
        live = np.flatnonzero(np.isfinite(scores))
        n = min(self.beam_size, live.size)
        top = live[np.argpartition(-scores[live], n - 1)[:n]] if n < live.size else live
        top = top[np.lexsort((top, -scores[top]))]  # best first, ties: stays, then beam order
        prefixes, new_b, new_t, new_last, fusion, states = [], [], [], [], [], []
        grow_parent, grow_token, grow_at = [], [], []
        kk = cands.size
        for i in top.tolist():
            if i < b:
                prefixes.append(self.prefixes[i])
                new_b.append(stay_b[i]), new_t.append(stay_t[i]), new_last.append(last[i])
                fusion.append(self.fusion[i]), states.append(self.lm_states[i])
            else:
                parent, j = divmod(i - b, kk)
                c = int(cands[j])
                prefixes.append(self.prefixes[parent] + (c,))
                new_b.append(NEG_INF), new_t.append(ext[parent, j]), new_last.append(c)
                fusion.append(ext_fusion[parent, j]), states.append(None)
                grow_parent.append(self.lm_states[parent]), grow_token.append(c)
                grow_at.append(len(states) - 1)
        if self.lm is not None and grow_at:  # the new prefixes' LM states: one batched step
            for at, s in zip(grow_at, self.lm.advance(grow_parent, grow_token)):
                states[at] = s
        self.prefixes, self.lm_states = prefixes, states
        self.pb, self.pt = np.array(new_b), np.array(new_t)
        self.last, self.fusion = np.array(new_last, dtype=np.int64), np.array(fusion)

    def _hypotheses(self):
        return self.prefixes

    def _search_scores(self) -> np.ndarray:
        return np.logaddexp(self.pb, self.pt)


class CTCPrefixBeam(CTCPrefixBeamLM):
    """CTC prefix beam search (Hannun et al. 2014), no language model: :class:`CTCPrefixBeamLM`
    without an LM or a length bonus, its score the prefix's CTC log-probability (the sum over
    its alignments).

    Unlike the best path, it sums the paths of a prefix:

    >>> lp = np.log(np.array([[.6, .4], [.6, .4]]))  # (T, V): blank, "1"
    >>> g = CTCGreedy(); g.step(lp); g.best()  # blank-blank: 0.36
    []
    >>> b = CTCPrefixBeam(beam_size=2); b.step(lp); b.best()  # 3 paths: 0.64
    [1]
    """

    def __init__(self, beam_size: int, blank: int = 0):
        super().__init__(beam_size, blank=blank)


def make_ctc_search(beam_size: int, blank: int = 0, lm: Optional[LMScorer] = None,
                    lm_weight: float = 0.0, length_bonus: float = 0.0):
    """``beam_size == 1`` and no LM: greedy (best path); ``> 1``: prefix beam search; with an
    LM or a length bonus: prefix beam search with shallow fusion (:class:`CTCPrefixBeamLM`)."""
    if beam_size < 1:
        raise ValueError(f"beam_size={beam_size}: must be >= 1")
    if lm is not None or lm_weight or length_bonus:
        return CTCPrefixBeamLM(beam_size, lm, lm_weight, length_bonus, blank)
    return CTCGreedy(blank) if beam_size == 1 else CTCPrefixBeam(beam_size, blank)
