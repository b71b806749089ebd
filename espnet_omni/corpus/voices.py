"""Catalogue of the TTS voices of the embedded corpus, split by speaker.

A *voice* is what an engine is asked to speak with; a *speaker* is the human
(or, for espeak-ng, the accent) behind it.  One recorded human behind two
engines is ONE speaker: flite ``kal``/``kal16`` and festival ``kal_diphone``
are speaker ``kal``; flite ``slt`` and festival ``cmu_us_slt_arctic_hts`` are
speaker ``slt``.  For espeak-ng every accent+variant pair is a voice and the
accent is the speaker, so a held-out accent is unheard in training whatever
its variant.

Splits are by speaker (dev and test speakers never occur in train):

=========  ==============================================================
split      speakers (family)
=========  ==============================================================
train      kal, slt (flite + festival) and their pseudo-speakers
           (``kal_vtl084`` ...); espeak en_gb, en_us, en_gb_scotland,
           en_gb_x_gbclan, en_029
dev        awb (flite); espeak en_gb_x_rp
test       rms (flite); ked (festival ``ked_diphone``, Debian package
           festvox-kdlpc16k); espeak en_gb_x_gbcwmd, en_us_nyc
=========  ==============================================================

flite ``awb_time`` is left out: it only speaks clock times.

*Pseudo-speakers* (train only).  The two recorded humans are the only human
voices training has, and a model trained on two humans does not carry over to
a third (``shared/BASELINE.md``).  Each recorded train voice is also rendered
with a vocal-tract-length warp ``w`` (:data:`PSEUDO_WARPS`): ``sox speed w``
scales every frequency (F0 and formants) by ``w`` and the engine's duration
stretch compensates the tempo, as the per-utterance pitch shift does.  Each
warp of a human is its own speaker (``kal_vtl084``: kal warped by 0.84),
derived from a train speaker, so dev and test speakers stay unheard.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

ENGINES = ("espeak-ng", "flite", "festival")
FAMILIES = ("espeak", "flite", "festival")
SPLITS = ("train", "dev", "test")

# Debian package that provides each engine binary / voice.
ENGINE_PACKAGES: Dict[str, str] = {
    "espeak-ng": "espeak-ng",
    "flite": "flite",
    "festival": "festival",
    "sox": "sox",
}
FESTIVAL_VOICE_PACKAGES: Dict[str, str] = {
    "kal_diphone": "festvox-kallpc16k",
    "ked_diphone": "festvox-kdlpc16k",
    "cmu_us_slt_arctic_hts": "festvox-us-slt-hts",
}
FESTIVAL_VOICE_ROOT = Path("/usr/share/festival/voices")

# espeak-ng accent -> split.  Dev/test accents each have a close relative in
# train (rp ~ gb, gbcwmd ~ gb, nyc ~ us): unheard, not alien.
ESPEAK_ACCENTS: Dict[str, str] = {
    "en-gb": "train",
    "en-us": "train",
    "en-gb-scotland": "train",
    "en-gb-x-gbclan": "train",
    "en-029": "train",
    "en-gb-x-rp": "dev",
    "en-gb-x-gbcwmd": "test",
    "en-us-nyc": "test",
}
# Human-sounding espeak-ng variants ("" = the accent's own default voice);
# the robotic, whispering and joke variants are left out.
ESPEAK_VARIANTS: Tuple[str, ...] = (
    "", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8",
    "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2", "klatt3",
)  # fmt: skip

# More espeak-ng variants, for the TRAIN accents only (dev/test keep
# ESPEAK_VARIANTS, so their audio is unchanged): every variant of
# `espeak-ng --voices=variant` except the robotic, whispering, croaking,
# demonic and test ones.  More variants = more formant/F0/voice-quality
# settings per accent, at no compute cost (the utterance count is fixed).
ESPEAK_TRAIN_EXTRA_VARIANTS: Tuple[str, ...] = (
    "adam", "Alex", "Alicia", "Andrea", "Andy", "Annie", "antonio", "aunty",
    "belinda", "benjamin", "boris", "caleb", "david", "Denis", "Diogo", "ed",
    "edward", "edward2", "Gene", "Gene2", "gustave", "Henrique", "Hugo", "iven",
    "iven2", "iven3", "iven4", "Jacky", "john", "kaukovalta", "Lee", "linda",
    "marcelo", "Marco", "Mario", "max", "Michael", "michel", "miguel", "Mike",
    "Nguyen", "pablo", "paul", "pedro", "quincy", "rob", "robert", "steph",
    "steph2", "steph3", "travis", "victor", "zac", "anika", "norbert", "sandro",
    "shelby", "klatt4", "klatt5", "klatt6",
)  # fmt: skip

# Vocal-tract-length warps of the recorded train voices (pseudo-speakers):
# symmetric in log (+-8%, +-17%), beyond the per-utterance +-200 cents
# (x0.89..x1.12) that every voice gets, so a warped speaker's range overlaps
# its neighbour's but is centred elsewhere.
PSEUDO_WARPS: Tuple[float, ...] = (0.84, 0.92, 1.09, 1.19)

# (engine, voice name, speaker, split) for the flite and festival voices.
_FIXED_VOICES: Tuple[Tuple[str, str, str, str], ...] = (
    ("flite", "kal", "kal", "train"),  # 8 kHz diphone
    ("flite", "kal16", "kal", "train"),
    ("flite", "slt", "slt", "train"),
    ("festival", "kal_diphone", "kal", "train"),
    ("festival", "cmu_us_slt_arctic_hts", "slt", "train"),
    ("flite", "awb", "awb", "dev"),
    ("flite", "rms", "rms", "test"),
    ("festival", "ked_diphone", "ked", "test"),
)


@dataclass(frozen=True)
class Voice:
    """One synthesizer voice.

    Attributes:
        engine: binary that renders it: ``espeak-ng``, ``flite`` or ``festival``.
        name: the engine's voice argument (``en-gb-scotland+m3``, ``kal16``,
            ``kal_diphone``).
        speaker: speaker id (``[a-z0-9_]``, the Kaldi utterance-id prefix).
        family: ``espeak``, ``flite`` or ``festival`` (for per-family WER).
        split: ``train``, ``dev`` or ``test``.
        warp: vocal-tract-length factor of a pseudo-speaker (1.0: the voice
            as recorded); every frequency of the rendered audio is scaled by it.
    """

    engine: str
    name: str
    speaker: str
    family: str
    split: str
    warp: float = 1.0

    def __post_init__(self) -> None:
        for key, value, valid in (
            ("engine", self.engine, ENGINES),
            ("family", self.family, FAMILIES),
            ("split", self.split, SPLITS),
        ):
            if value not in valid:
                raise ValueError(f"Voice {self.name!r}: {key}={value!r}, valid: {valid}")
        if not 0.5 <= self.warp <= 2.0:
            raise ValueError(f"Voice {self.name!r}: warp={self.warp}, valid: 0.5 <= warp <= 2.0")

    @property
    def voice_id(self) -> str:
        """Unique, whitespace-free id, e.g. ``espeak-ng:en-gb+m3``, ``flite:kal16@0.84``."""
        base = f"{self.engine}:{self.name}"
        return base if self.warp == 1.0 else f"{base}@{self.warp:.2f}"

    @property
    def is_pseudo(self) -> bool:
        """A warped rendering of a recorded voice (a pseudo-speaker)."""
        return self.warp != 1.0


def _espeak_speaker(accent: str) -> str:
    return accent.replace("-", "_")


def pseudo_speaker(speaker: str, warp: float) -> str:
    """Speaker id of a warped recorded speaker.

    >>> pseudo_speaker("kal", 0.84), pseudo_speaker("slt", 1.19)
    ('kal_vtl084', 'slt_vtl119')
    """
    return f"{speaker}_vtl{round(warp * 100):03d}"


@functools.lru_cache(maxsize=1)
def catalogue() -> Tuple[Voice, ...]:
    """All voices, in a fixed order (the planner's determinism relies on it)."""
    family = {"espeak-ng": "espeak", "flite": "flite", "festival": "festival"}
    voices: List[Voice] = [
        Voice(engine, name, speaker, family[engine], split)
        for engine, name, speaker, split in _FIXED_VOICES
    ]
    for engine, name, speaker, split in _FIXED_VOICES:
        if split == "train":
            for warp in PSEUDO_WARPS:
                voices.append(
                    Voice(engine, name, pseudo_speaker(speaker, warp), family[engine], split, warp)
                )
    for accent, split in ESPEAK_ACCENTS.items():
        variants = ESPEAK_VARIANTS + (ESPEAK_TRAIN_EXTRA_VARIANTS if split == "train" else ())
        for variant in variants:
            name = f"{accent}+{variant}" if variant else accent
            voices.append(Voice("espeak-ng", name, _espeak_speaker(accent), "espeak", split))
    return tuple(voices)


def voices_for_split(split: str) -> List[Voice]:
    """The voices of one split, in catalogue order."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}, valid: {SPLITS}")
    return [v for v in catalogue() if v.split == split]


def speakers_by_split() -> Dict[str, List[str]]:
    """``{split: sorted speaker ids}``; the three sets are disjoint."""
    out: Dict[str, List[str]] = {}
    for split in SPLITS:
        out[split] = sorted({v.speaker for v in voices_for_split(split)})
    return out


class MissingEngineError(RuntimeError):
    """A TTS engine, a voice or sox is not installed."""


def _flite_voices(binary: str) -> List[str]:
    """Voices compiled into flite (``flite -lv``)."""
    res = subprocess.run([binary, "-lv"], capture_output=True, text=True, check=False)
    text = res.stdout + res.stderr
    return text.split(":", 1)[1].split() if ":" in text else []


def _espeak_voices(binary: str) -> Tuple[List[str], List[str]]:
    """(English language codes, variant file names) known to espeak-ng."""
    def table(arg: str) -> List[List[str]]:
        res = subprocess.run([binary, arg], capture_output=True, text=True, check=False)
        return [line.split() for line in res.stdout.splitlines()[1:] if line.split()]

    accents = [row[1] for row in table("--voices=en") if len(row) > 1]
    variants = [row[-1].split("/", 1)[1] for row in table("--voices=variant") if "/" in row[-1]]
    return accents, variants


def check_available(
    voices: Sequence[Voice], festival_voice_root: Path = FESTIVAL_VOICE_ROOT
) -> Dict[str, str]:
    """Check that sox, the engines and the voices used by ``voices`` exist.

    Returns ``{tool: absolute path}`` for sox and each engine used.
    Raises :class:`MissingEngineError` naming the Debian package to install.
    """
    tools: Dict[str, str] = {}
    for tool in ["sox"] + sorted({v.engine for v in voices}):
        path = shutil.which(tool)
        if path is None:
            raise MissingEngineError(
                f"{tool} not found on PATH: apt-get install {ENGINE_PACKAGES[tool]}"
            )
        tools[tool] = path
    flite_names = sorted({v.name for v in voices if v.engine == "flite"})
    if flite_names:
        have = _flite_voices(tools["flite"])
        missing = [n for n in flite_names if n not in have]
        if missing:
            raise MissingEngineError(
                f"flite voice(s) {missing} not in `flite -lv` (which lists {have}): "
                f"apt-get install flite (Debian's build has kal kal16 awb rms slt)"
            )
    espeak_names = sorted({v.name for v in voices if v.engine == "espeak-ng"})
    if espeak_names:
        # espeak-ng silently falls back to its default for an unknown voice.
        accents, variants = _espeak_voices(tools["espeak-ng"])
        for name in espeak_names:
            accent, _, variant = name.partition("+")
            if accent not in accents or (variant and variant not in variants):
                raise MissingEngineError(
                    f"espeak-ng voice {name} not found (`espeak-ng --voices=en` and "
                    f"`espeak-ng --voices=variant`): apt-get install espeak-ng-data"
                )
    for name in sorted({v.name for v in voices if v.engine == "festival"}):
        if not list(festival_voice_root.glob(f"*/{name}")):
            raise MissingEngineError(
                f"festival voice {name} not found under {festival_voice_root}: "
                f"apt-get install {FESTIVAL_VOICE_PACKAGES.get(name, 'festvox-*')}"
            )
    return tools
