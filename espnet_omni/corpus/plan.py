"""What to synthesize: sentences, voices and augmentation per utterance.

The plan is a pure function of (:class:`SynthConfig`, sentence pool): the
same seed gives the same utterance ids, texts, voices and augmentation, and
so (the renderers being deterministic) the same wav bytes.

* Sentences: the pool is shuffled once; test, dev and train take disjoint
  slices of it, so no sentence (transcript) appears in two splits.
* Voices: per split, utterances are shared among families by
  ``family_weights`` (largest remainder, exact counts), then equally among the
  family's speakers, then round-robin over each speaker's voices, then
  shuffled: every speaker of a split is heard when the split is big enough.
* Augmentation: tempo (speaking rate), pitch shift in cents, and peak level
  in dBFS, uniform in the configured ranges (how they are applied: see
  ``synth.py``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from espnet_omni.corpus.text import FilterConfig, PoolConfig, Sentence
from espnet_omni.corpus.voices import FAMILIES, SPLITS, Voice, voices_for_split

# (train, dev, test) utterances.  tiny: for tests (~100 s of audio).
# default: the split sizes of the baseline in shared/BASELINE.md; measured
# 1.82 h train, 0.14 h dev, 0.16 h test (2.5-2.8 s per utterance), rendered
# in ~170 CPU-seconds (~90 s wall on 2 free cores).
SIZES: Dict[str, Tuple[int, int, int]] = {
    "tiny": (24, 8, 8),
    "default": (2600, 200, 200),
}
PLAN_VERSION = "espnet_omni synth plan v1"


@dataclass(frozen=True)
class AugmentConfig:
    """Per-utterance signal variation (uniform ranges).

    Attributes:
        tempo_min, tempo_max: speaking-rate factor (>1 is faster).
        pitch_cents: shift drawn from ``[-pitch_cents, pitch_cents]`` (100
            cents = 1 semitone).  It is applied by resampling, so formants
            move with F0, like Kaldi's speed perturbation (200 cents = x1.12).
        peak_db_min, peak_db_max: peak level in dBFS after normalization
            (the engines' native levels differ by >10 dB).
    """

    tempo_min: float = 0.85
    tempo_max: float = 1.15
    pitch_cents: float = 200.0
    peak_db_min: float = -10.0
    peak_db_max: float = -1.0

    def __post_init__(self) -> None:
        if not 0.5 <= self.tempo_min <= self.tempo_max <= 2.0:
            raise ValueError(
                f"AugmentConfig: need 0.5 <= tempo_min <= tempo_max <= 2.0, got "
                f"{self.tempo_min}, {self.tempo_max}"
            )
        if not 0.0 <= self.pitch_cents <= 1200.0:
            raise ValueError(f"AugmentConfig: pitch_cents in [0, 1200], got {self.pitch_cents}")
        if not -40.0 <= self.peak_db_min <= self.peak_db_max <= 0.0:
            raise ValueError(
                f"AugmentConfig: need -40 <= peak_db_min <= peak_db_max <= 0, got "
                f"{self.peak_db_min}, {self.peak_db_max}"
            )


@dataclass(frozen=True)
class SynthConfig:
    """Everything that determines the synthetic corpus.

    Attributes:
        num_train, num_dev, num_test: utterances per split.
        seed: one seed for sentences, voices and augmentation.
        family_weights: share of each family within a split, renormalized over
            the families the split has (dev has no festival voice).
        pool: how the sentence pool is built (``text.PoolConfig``).
        augment: signal variation.
    """

    num_train: int = SIZES["default"][0]
    num_dev: int = SIZES["default"][1]
    num_test: int = SIZES["default"][2]
    seed: int = 0
    family_weights: Tuple[Tuple[str, float], ...] = (
        ("espeak", 0.5),
        ("flite", 0.3),
        ("festival", 0.2),
    )
    # >= 5 words: ~7.6 words (~2.8 s) per utterance on average instead of 6.2;
    # 2000 words: ~11k sentences, ~1-2% of test words unseen in training.
    pool: PoolConfig = PoolConfig(vocab_size=2000, filter=FilterConfig(min_words=5))
    augment: AugmentConfig = AugmentConfig()

    def __post_init__(self) -> None:
        for name in ("num_train", "num_dev", "num_test"):
            if getattr(self, name) < 1:
                raise ValueError(f"SynthConfig: {name} must be >= 1, got {getattr(self, name)}")
        for fam, w in self.family_weights:
            if fam not in FAMILIES or w < 0:
                raise ValueError(
                    f"SynthConfig.family_weights: ({fam!r}, {w}): family must be one of "
                    f"{FAMILIES} and weight >= 0"
                )

    @classmethod
    def from_size(cls, size: str, num_utts: Optional[int] = None, **kwargs) -> "SynthConfig":
        """Config for a named size; ``num_utts`` rescales its three splits.

        ``num_utts`` is the total over train+dev+test, shared in the preset's
        proportions (each split gets at least one utterance).
        """
        if size not in SIZES:
            raise ValueError(f"unknown size {size!r}, valid: {sorted(SIZES)}")
        counts = SIZES[size]
        if num_utts is not None:
            if num_utts < 3:
                raise ValueError(f"num_utts must be >= 3 (one per split), got {num_utts}")
            dev = max(1, round(num_utts * counts[1] / sum(counts)))
            test = max(1, round(num_utts * counts[2] / sum(counts)))
            counts = (num_utts - dev - test, dev, test)
        return cls(num_train=counts[0], num_dev=counts[1], num_test=counts[2], **kwargs)

    def split_sizes(self) -> Dict[str, int]:
        return {"train": self.num_train, "dev": self.num_dev, "test": self.num_test}


@dataclass(frozen=True)
class PlannedUtt:
    """One utterance to render.

    Attributes:
        utt_id: ``<speaker>-<6-digit pool rank>`` (unique over all splits).
        split, voice: where it goes and who says it.
        display: the text given to the engine; transcript: the label.
        tempo: speaking-rate factor; pitch_cents: pitch/formant shift;
        peak_db: output peak level in dBFS.
    """

    utt_id: str
    split: str
    voice: Voice
    display: str
    transcript: str
    tempo: float
    pitch_cents: int
    peak_db: float

    def row(self) -> str:
        """One tab-separated line of ``synth_plan.tsv`` (no newline)."""
        return "\t".join(
            [self.utt_id, self.split, self.voice.voice_id, f"{self.tempo:.3f}",
             str(self.pitch_cents), f"{self.peak_db:.1f}", self.display]
        )  # fmt: skip


def allocate(n: int, weights: Sequence[Tuple[str, float]]) -> Dict[str, int]:
    """Share ``n`` items by ``weights`` with exact integer counts.

    Largest-remainder rounding; ties go to the key listed first.

    >>> allocate(8, [("espeak", 0.5), ("flite", 0.3), ("festival", 0.2)])
    {'espeak': 4, 'flite': 2, 'festival': 2}
    """
    total = sum(w for _, w in weights)
    if total <= 0:
        raise ValueError(f"allocate: weights must sum to > 0, got {list(weights)}")
    exact = [(k, n * w / total) for k, w in weights]
    counts = {k: int(x) for k, x in exact}
    left = n - sum(counts.values())
    order = sorted(range(len(exact)), key=lambda i: -(exact[i][1] - int(exact[i][1])))
    for i in order[:left]:
        counts[exact[i][0]] += 1
    return counts


def _split_voices(split: str, n: int, cfg: SynthConfig, rng: random.Random) -> List[Voice]:
    """``n`` voices for one split: family weights, then speakers, then voices."""
    voices = voices_for_split(split)
    weights = [(f, w) for f, w in cfg.family_weights if any(v.family == f for v in voices)]
    if not any(w > 0 for _, w in weights):
        raise ValueError(
            f"SynthConfig.family_weights gives zero weight to every family of split "
            f"{split!r} ({sorted({v.family for v in voices})})"
        )
    out: List[Voice] = []
    for family, n_family in allocate(n, weights).items():
        speakers = sorted({v.speaker for v in voices if v.family == family})
        for speaker, n_spk in allocate(n_family, [(s, 1.0) for s in speakers]).items():
            own = [v for v in voices if v.family == family and v.speaker == speaker]
            rng.shuffle(own)
            out.extend(own[i % len(own)] for i in range(n_spk))
    rng.shuffle(out)
    return out


def build_plan(cfg: SynthConfig, pool: Sequence[Sentence]) -> List[PlannedUtt]:
    """The utterances of all splits, sorted by (split order, utt id)."""
    sizes = cfg.split_sizes()
    total = sum(sizes.values())
    if total > len(pool):
        raise ValueError(
            f"{total} utterances requested but the sentence pool has only {len(pool)} "
            f"sentences; lower --num_utts or raise the pool's vocab_size "
            f"(now {cfg.pool.vocab_size})"
        )
    sent_rng = random.Random(f"{cfg.seed}:sentences")
    voice_rng = random.Random(f"{cfg.seed}:voices")
    aug_rng = random.Random(f"{cfg.seed}:augment")
    ranks = sent_rng.sample(range(len(pool)), total)
    aug = cfg.augment
    plan: List[PlannedUtt] = []
    start = 0
    for split in ("test", "dev", "train"):  # fixed order: test first
        n = sizes[split]
        split_ranks = ranks[start : start + n]
        start += n
        split_voices = _split_voices(split, n, cfg, voice_rng)
        for rank, voice in zip(split_ranks, split_voices, strict=True):
            sent = pool[rank]
            plan.append(
                PlannedUtt(
                    utt_id=f"{voice.speaker}-{rank:06d}",
                    split=split,
                    voice=voice,
                    display=sent.display,
                    transcript=sent.transcript,
                    tempo=round(aug_rng.uniform(aug.tempo_min, aug.tempo_max), 3),
                    pitch_cents=round(aug_rng.uniform(-aug.pitch_cents, aug.pitch_cents)),
                    peak_db=round(aug_rng.uniform(aug.peak_db_min, aug.peak_db_max), 1),
                )
            )
    plan.sort(key=lambda u: (SPLITS.index(u.split), u.utt_id))
    return plan
