"""Word and character error rates with substitution/deletion/insertion counts.

Pure functions over token lists; no ESPnet. The alignment is RapidFuzz's
(C++, the backend of jiwer), see :func:`align_counts`.

>>> e = align_counts("a b c".split(), "a x c d".split())
>>> (e.sub, e.dele, e.ins, e.ref_len)
(1, 0, 1, 3)
>>> round(e.rate, 4)
0.6667
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

from rapidfuzz.distance import Levenshtein


@dataclass
class ErrorCounts:
    """Edit counts of hypotheses against references (summable)."""

    sub: int = 0
    dele: int = 0
    ins: int = 0
    ref_len: int = 0
    n_utts: int = 0

    @property
    def errors(self) -> int:
        return self.sub + self.dele + self.ins

    @property
    def rate(self) -> float:
        """Errors / reference length (0.0 for an empty reference set)."""
        return self.errors / self.ref_len if self.ref_len else 0.0

    def __add__(self, other: "ErrorCounts") -> "ErrorCounts":
        return ErrorCounts(
            self.sub + other.sub,
            self.dele + other.dele,
            self.ins + other.ins,
            self.ref_len + other.ref_len,
            self.n_utts + other.n_utts,
        )


def align_counts(ref: Sequence[str], hyp: Sequence[str]) -> ErrorCounts:
    """Minimum edit alignment of `hyp` to `ref` (Levenshtein, unit costs).

    Among alignments of equal cost, the one with the most substitutions is
    preferred over a deletion + insertion pair, as sclite does.

    One weighted Levenshtein distance of RapidFuzz (C++; the library behind
    jiwer) gives all three counts: with substitution weight ``B`` and
    insertion/deletion weight ``B + 1``, where ``B = len(ref) + len(hyp) + 1``
    exceeds any number of insertions + deletions, an alignment weighs
    ``B * errors + (dele + ins)``, so the lightest one has the fewest errors
    and, among those, the most substitutions. Then ``divmod(weight, B)`` is
    ``(errors, dele + ins)``, and ``dele - ins = len(ref) - len(hyp)``.
    (jiwer's ``process_words`` keeps whichever minimal alignment RapidFuzz's
    backtrace finds, which may trade a substitution for a deletion +
    insertion; the error total is the same, the split is not.)

    >>> c = align_counts("a b".split(), "b c".split())  # 2 substitutions, not del a + ins c
    >>> (c.sub, c.dele, c.ins)
    (2, 0, 0)
    """
    n, m = len(ref), len(hyp)
    ids: dict = {}  # tokens -> small ints: exact equality, no hash collisions
    a = [ids.setdefault(t, len(ids)) for t in ref]
    b = [ids.setdefault(t, len(ids)) for t in hyp]
    big = n + m + 1
    errors, indel = divmod(Levenshtein.distance(a, b, weights=(big + 1, big + 1, big)), big)
    dele = (indel + n - m) // 2
    return ErrorCounts(sub=errors - indel, dele=dele, ins=indel - dele, ref_len=n, n_utts=1)


def word_counts(ref: str, hyp: str) -> ErrorCounts:
    """Word-level counts of two transcripts."""
    return align_counts(ref.split(), hyp.split())


def char_counts(ref: str, hyp: str) -> ErrorCounts:
    """Character-level counts; a word boundary counts as one character."""
    return align_counts(" ".join(ref.split()), " ".join(hyp.split()))


def corpus_counts(ref: dict[str, str], hyp: dict[str, str], counts=word_counts) -> ErrorCounts:
    """Counts summed over every utterance of ``ref`` (a missing hypothesis counts as
    empty); ``counts``: :func:`word_counts` or :func:`char_counts`."""
    total = ErrorCounts()
    for utt, text in ref.items():
        total += counts(text, hyp.get(utt, ""))
    return total


def paired_bootstrap(ref: dict[str, str], hyp_a: dict[str, str], hyp_b: dict[str, str],
                     resamples: int = 1000, level: float = 0.95, seed: int = 0) -> dict[str, float]:
    """Word error rate of A minus that of B (points) and its paired bootstrap interval.

    The utterances of ``ref`` are resampled with replacement (Bisani & Ney, 2004): each
    resample's difference is computed from the summed errors and reference words of both
    systems on the same utterances. A missing hypothesis counts as empty. Each utterance is
    aligned once per system; a resample only sums those per-utterance counts.
    Returns ``{"delta", "lo", "hi", "p_a_better"}`` (``p_a_better``: share of resamples
    where A has fewer errors than B).
    """
    if not ref:
        raise ValueError("paired_bootstrap: no reference utterances")
    if not 0.0 < level < 1.0 or resamples < 1:
        raise ValueError(f"paired_bootstrap: need 0 < level < 1 and resamples >= 1, got {level}, {resamples}")
    utts = sorted(ref)
    rows = [(word_counts(ref[u], hyp_a.get(u, "")).errors, word_counts(ref[u], hyp_b.get(u, "")).errors,
             len(ref[u].split())) for u in utts]

    def delta(sample) -> float:
        ea = sum(r[0] for r in sample)
        eb = sum(r[1] for r in sample)
        n = sum(r[2] for r in sample)
        return 100.0 * (ea - eb) / n if n else 0.0

    rng = random.Random(seed)
    ds = sorted(delta(rng.choices(rows, k=len(rows))) for _ in range(resamples))
    lo = ds[int((1 - level) / 2 * resamples)]
    hi = ds[max(0, int((1 + level) / 2 * resamples) - 1)]
    return {"delta": delta(rows), "lo": lo, "hi": hi, "p_a_better": sum(d < 0 for d in ds) / resamples}


def bootstrap_summary(d: dict[str, float]) -> str:
    """One phrase for a :func:`paired_bootstrap` result, e.g.
    ``difference +4.1 points, 95% CI +1.3 .. +6.9: significant``.

    >>> bootstrap_summary({"delta": -1.23, "lo": -3.0, "hi": 0.5, "p_a_better": 0.9})
    'difference -1.2 points, 95% CI -3.0 .. +0.5: not significant'
    """
    sig = "significant" if d["lo"] > 0 or d["hi"] < 0 else "not significant"
    return f"difference {d['delta']:+.1f} points, 95% CI {d['lo']:+.1f} .. {d['hi']:+.1f}: {sig}"
