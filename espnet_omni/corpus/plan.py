"""What to synthesize: sentences, voices and augmentation per utterance.

The plan is a pure function of (:class:`SynthConfig`, sentence pool): the
same seed gives the same utterance ids, texts, voices and augmentation, and
so (the renderers being deterministic) the same wav bytes.

* Sentences: the reserved slice (:func:`text.is_reserved`, kept for
  evaluations from outside the recipe) is removed from the pool; the rest is
  shuffled once; test, dev, test_seen and train take disjoint slices of it, so
  no sentence (transcript) appears in two splits.  What is left is the LM text
  pool (:func:`lm_pool`).
* test_seen: the training voices as they are (:func:`is_base_voice`: no
  pseudo-speaker, no extra espeak variant) reading sentences of no other split: "did it learn" apart from "does it carry over
  to a new voice".
* Voices: per split, utterances are shared among families by
  ``family_weights`` (largest remainder, exact counts), then equally among the
  family's speakers, then round-robin over each speaker's voices, then
  shuffled: every speaker of a split is heard when the split is big enough.
* Augmentation: tempo (speaking rate), pitch shift in cents, and peak level
  in dBFS, uniform in the configured ranges (how they are applied: see
  ``synth.py``); train has its own, wider ranges (``train_augment``), the
  evaluation splits keep ``augment``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from espnet_omni.corpus.text import FilterConfig, PoolConfig, Sentence, is_reserved
from espnet_omni.corpus.voices import ESPEAK_VARIANTS, FAMILIES, Voice, voices_for_split

# The splits of the plan, in output order.  test_seen and untranscribed are spoken by train
# voices; untranscribed (empty unless asked for) is extra audio for self-supervised pretraining.
PLAN_SPLITS: Tuple[str, ...] = ("train", "dev", "test", "test_seen", "untranscribed")
# Voices of each plan split come from this catalogue split.
VOICE_SPLIT: Dict[str, str] = {"train": "train", "dev": "dev", "test": "test", "test_seen": "train",
                               "untranscribed": "train"}

# (train, dev, test, test_seen) utterances.  tiny: for tests (~120 s of audio).
# default: train as in shared/BASELINE.md (2600 utts, ~1.8 h), 200 each for the
# evaluation splits (2.5-2.8 s per utterance); rendered in ~200 CPU-seconds.
SIZES: Dict[str, Tuple[int, int, int, int]] = {
    "tiny": (24, 8, 8, 8),
    "default": (2600, 200, 200, 200),
}
PLAN_VERSION = "espnet_omni synth plan v2"
TRAIN_VOICES: Tuple[str, ...] = ("all", "base")


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


# Training audio varies more than the evaluation audio: faster and slower
# speech and a +-250 cent shift (x0.87..x1.16) on top of the pseudo-speakers'
# warps, so the model meets a held-out voice's rate and pitch inside its range.
TRAIN_AUGMENT = AugmentConfig(tempo_min=0.8, tempo_max=1.25, pitch_cents=250.0,
                              peak_db_min=-20.0, peak_db_max=-1.0)  # fmt: skip


@dataclass(frozen=True)
class SynthConfig:
    """Everything that determines the synthetic corpus.

    Attributes:
        num_train, num_dev, num_test, num_test_seen: utterances per split.
        num_untranscribed: utterances of the ``untranscribed`` split (training
            voices, as train's, on sentences of no other split), audio for
            self-supervised pretraining; 0: none.  The other splits are the
            same utterances whatever its size.
        seed: one seed for sentences, voices and augmentation.
        family_weights: share of each family within a split, renormalized over
            the families the split has (dev has no festival voice).
        pool: how the sentence pool is built (``text.PoolConfig``).
        augment: signal variation of the evaluation splits.
        train_augment: signal variation of the train split.
        train_voices: ``base`` (the voices and ranges of plan v1: no
            pseudo-speaker, :data:`voices.ESPEAK_VARIANTS` only, ``augment``;
            the default, as ``all`` was no better on dev or test at the
            recipe's compute: RESULTS.md ``ablation``), or ``all`` (every train
            voice of the catalogue: the pseudo-speakers and the extra espeak
            variants included, with ``train_augment``).  The evaluation splits
            are the same utterances either way (same sentences, voices and audio).
    """

    num_train: int = SIZES["default"][0]
    num_dev: int = SIZES["default"][1]
    num_test: int = SIZES["default"][2]
    num_test_seen: int = SIZES["default"][3]
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
    train_augment: AugmentConfig = TRAIN_AUGMENT
    train_voices: str = "base"
    num_untranscribed: int = 0

    def __post_init__(self) -> None:
        if self.train_voices not in TRAIN_VOICES:
            raise ValueError(
                f"SynthConfig.train_voices: {self.train_voices!r}, valid: {TRAIN_VOICES}"
            )
        for name in ("num_train", "num_dev", "num_test", "num_test_seen"):
            if getattr(self, name) < 1:
                raise ValueError(f"SynthConfig: {name} must be >= 1, got {getattr(self, name)}")
        if self.num_untranscribed < 0:
            raise ValueError(f"SynthConfig: num_untranscribed must be >= 0, got {self.num_untranscribed}")
        for fam, w in self.family_weights:
            if fam not in FAMILIES or w < 0:
                raise ValueError(
                    f"SynthConfig.family_weights: ({fam!r}, {w}): family must be one of "
                    f"{FAMILIES} and weight >= 0"
                )

    @classmethod
    def from_size(cls, size: str, num_utts: Optional[int] = None, **kwargs) -> "SynthConfig":
        """Config for a named size; ``num_utts`` rescales its three splits.

        ``num_utts`` is the total over the four splits, shared in the preset's
        proportions (each split gets at least one utterance).
        """
        if size not in SIZES:
            raise ValueError(f"unknown size {size!r}, valid: {sorted(SIZES)}")
        counts = SIZES[size]
        if num_utts is not None:
            if num_utts < 4:
                raise ValueError(f"num_utts must be >= 4 (one per split), got {num_utts}")
            evals = [max(1, round(num_utts * c / sum(counts))) for c in counts[1:]]
            counts = (num_utts - sum(evals), *evals)
        return cls(num_train=counts[0], num_dev=counts[1], num_test=counts[2],
                   num_test_seen=counts[3], **kwargs)  # fmt: skip

    def split_sizes(self) -> Dict[str, int]:
        """The four transcribed splits (``num_untranscribed`` comes on top of them)."""
        return {"train": self.num_train, "dev": self.num_dev, "test": self.num_test,
                "test_seen": self.num_test_seen}  # fmt: skip


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


def is_base_voice(v: Voice) -> bool:
    """A voice of plan v1: no pseudo-speaker, no extra espeak variant.

    >>> from espnet_omni.corpus.voices import catalogue
    >>> sorted({v.speaker for v in catalogue() if v.split == "train" and is_base_voice(v)})[:3]
    ['en_029', 'en_gb', 'en_gb_scotland']
    """
    variant = v.name.partition("+")[2] if v.engine == "espeak-ng" else ""
    return not v.is_pseudo and variant in ESPEAK_VARIANTS


def _split_voices(split: str, n: int, cfg: SynthConfig, rng: random.Random) -> List[Voice]:
    """``n`` voices for one plan split: family weights, then speakers, then voices."""
    voices = voices_for_split(VOICE_SPLIT[split])
    if split == "test_seen" or (split in ("train", "untranscribed") and cfg.train_voices == "base"):
        voices = [v for v in voices if is_base_voice(v)]
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


def usable_pool(pool: Sequence[Sentence]) -> List[Sentence]:
    """The pool without its reserved slice (:func:`text.is_reserved`)."""
    return [s for s in pool if not is_reserved(s.transcript)]


def _split_ranks(cfg: SynthConfig, pool: Sequence[Sentence]) -> Dict[str, List[int]]:
    """``{split: indices into usable_pool(pool)}``, disjoint, for the four splits."""
    sizes = cfg.split_sizes()
    total = sum(sizes.values())
    if total > len(pool):
        raise ValueError(
            f"{total} utterances requested but the sentence pool has only {len(pool)} "
            f"sentences outside its reserved slice; lower --num_utts or raise the pool's "
            f"vocab_size (now {cfg.pool.vocab_size})"
        )
    ranks = random.Random(f"{cfg.seed}:sentences").sample(range(len(pool)), total)
    out: Dict[str, List[int]] = {}
    start = 0
    for split in ("test", "dev", "test_seen", "train"):  # fixed order: test first
        out[split] = ranks[start : start + sizes[split]]
        start += sizes[split]
    if cfg.num_untranscribed:
        # from the sentences no split reads, by a generator of its own: the four splits are
        # the same utterances with or without it
        taken = set(ranks)
        rest = [i for i in range(len(pool)) if i not in taken]
        if cfg.num_untranscribed > len(rest):
            raise ValueError(
                f"num_untranscribed={cfg.num_untranscribed}: only {len(rest)} pool sentences are "
                f"left outside the other splits and the reserved slice")
        out["untranscribed"] = random.Random(f"{cfg.seed}:sentences:untranscribed").sample(
            rest, cfg.num_untranscribed)
    return out


def lm_pool(cfg: SynthConfig, pool: Sequence[Sentence]) -> List[Sentence]:
    """Sentences for language-model text: the usable pool minus every evaluation split.

    The train split's sentences stay in (the LM may know what the acoustic
    model was trained on); dev, test and test_seen sentences and the reserved
    slice are out.
    """
    usable = usable_pool(pool)
    held = {i for split, idx in _split_ranks(cfg, usable).items()
            if split not in ("train", "untranscribed") for i in idx}
    return [s for i, s in enumerate(usable) if i not in held]


def build_plan(cfg: SynthConfig, pool: Sequence[Sentence]) -> List[PlannedUtt]:
    """The utterances of all splits, sorted by (split order, utt id)."""
    pool = usable_pool(pool)
    plan: List[PlannedUtt] = []
    for split, split_ranks in _split_ranks(cfg, pool).items():
        # One generator per split: a split's voices and augmentation do not depend
        # on another split's (train_voices changes train only).
        voice_rng = random.Random(f"{cfg.seed}:voices:{split}")
        aug_rng = random.Random(f"{cfg.seed}:augment:{split}")
        wide = split == "train" and cfg.train_voices == "all"
        aug = cfg.train_augment if wide else cfg.augment
        split_voices = _split_voices(split, len(split_ranks), cfg, voice_rng)
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
    plan.sort(key=lambda u: (PLAN_SPLITS.index(u.split), u.utt_id))
    return plan
