"""Sentence pool for the embedded corpus, and the one transcript normalizer.

Sources (Debian packages, read-only):
  * ``fortunes``     : ``/usr/share/games/fortunes/<name>`` (``%``-separated).
  * ``wordnet-base`` : ``/usr/share/wordnet/data.{noun,verb,adj,adv}``; the
    gloss after ``|`` holds a definition and quoted example sentences.

Every data source of the project (synthetic, real LibriVox, LibriSpeech)
passes its transcripts through :func:`normalize_transcript`, so the token
inventory is the same everywhere: ``a-z``, the apostrophe, and single spaces.

The filters keep only sentences a TTS engine reads exactly as written: no
digits (TTS says "nineteen eighty four", the transcript would say "1984"), no
all-caps words (spelled out or shouted: "NASA", "IBM"), no abbreviations
("Mr.", "etc."), no URLs or symbols.  A vocabulary limit then keeps only
sentences made of the ``vocab_size`` most frequent words of the pool, which
keeps the test words unseen in training at a few percent.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, List, Sequence, Tuple

logger = logging.getLogger(__name__)

FORTUNES_DIR = Path("/usr/share/games/fortunes")
WORDNET_DIR = Path("/usr/share/wordnet")
WORDNET_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")

# Characters a kept sentence may contain: letters, space and the punctuation
# a TTS engine uses only for prosody.
_ALLOWED = re.compile(r"^[A-Za-z ,.;:!?'\"-]+$")
# Words read differently from how they are written even without a period.
ABBREVIATIONS = frozenset(
    """mr mrs ms dr st jr sr vs etc eg ie prof gen col lt sgt capt rev inc ltd
    co corp dept univ approx esq hon gov sen rep pres mt ft oz lb lbs km cm mm
    kg mg pp vol fig ca cf al ok tv pc ad bc am pm usa uk""".split()
)
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*")
_TAG = re.compile(r"</?s>")
_NON_LETTER = re.compile(r"[^a-z']+")
_QUOTE_APOSTROPHE = re.compile(r"(?<![a-z])'|'(?![a-z])")
_INNER_PERIOD = re.compile(r"[A-Za-z]\.[A-Za-z]")
_INITIAL = re.compile(r"(?:^|\s)[A-Z]\.")


def normalize_transcript(s: str) -> str:
    """Normalize a transcript to lowercase ``a-z``, apostrophes, single spaces.

    Hyphens and other punctuation become word breaks; apostrophes survive
    only inside a word ("don't", "o'clock"), so quote marks and the trailing
    possessive apostrophe ("students'") are dropped, which is how they sound.

    >>> normalize_transcript("  A long-forgotten 'friend' -- don't GO! ")
    "a long forgotten friend don't go"
    >>> normalize_transcript("<s> HE WAS NOT </s>")
    'he was not'
    """
    s = s.lower().replace("\u2019", "'")
    s = _TAG.sub(" ", s)
    s = _NON_LETTER.sub(" ", s)
    # An apostrophe not between two letters is a quote mark.
    s = _QUOTE_APOSTROPHE.sub(" ", s)
    return " ".join(s.split())


def is_reserved(transcript: str) -> bool:
    """True for a sentence of the slice reserved for evaluations from outside the recipe.

    Nothing the recipe makes may use these sentences: no training or evaluation
    utterance, no LM text, no extra audio.  The slice is about a tenth of the
    pool, chosen by a hash of the normalized transcript (lowercase words, single
    spaces, as written in ``data/*/text``), so anyone can recompute it:

    >>> t = "he was not an ill disposed young man"
    >>> is_reserved(t) == (int(hashlib.sha1(t.encode()).hexdigest(), 16) % 10 == 0)
    True
    """
    return int(hashlib.sha1(transcript.encode()).hexdigest(), 16) % 10 == 0


@dataclass(frozen=True)
class FilterConfig:
    """Which raw sentences are acceptable for TTS.

    Attributes:
        min_words: fewest words (after normalization) a sentence may have.
        max_words: most words a sentence may have (20 words ~ 6-8 s of speech).
    """

    min_words: int = 3
    max_words: int = 20

    def __post_init__(self) -> None:
        if not 1 <= self.min_words <= self.max_words:
            raise ValueError(
                f"FilterConfig: need 1 <= min_words <= max_words, got "
                f"min_words={self.min_words}, max_words={self.max_words}"
            )


def reject_reason(sentence: str, cfg: FilterConfig = FilterConfig()) -> str:
    """Why ``sentence`` is unfit for TTS, or ``""`` when it is fit.

    Reasons: ``chars`` (digits, symbols, URLs, non-ASCII), ``caps`` (an
    all-caps word other than "I"/"A"), ``abbrev`` (an abbreviation or a
    period inside a word), ``length`` (outside ``[min_words, max_words]``),
    ``quote`` (unbalanced double quotes).

    >>> reject_reason("He was not an ill disposed young man.")
    ''
    >>> reject_reason("Call me at 5 pm."), reject_reason("Ask the CIA now.")
    ('chars', 'caps')
    """
    return _check(sentence, cfg)[0]


def _check(sentence: str, cfg: FilterConfig) -> Tuple[str, List[str]]:
    """(reject reason or "", the words of the sentence as written)."""
    s = sentence.strip()
    if not s or not _ALLOWED.match(s):
        return "chars", []
    if s.count('"') % 2:
        return "quote", []
    # Within the allowed characters, the words of normalize_transcript(s)
    # are exactly the _WORD matches (hyphens split, inner apostrophes stay).
    words = _WORD.findall(s)
    if not cfg.min_words <= len(words) <= cfg.max_words:
        return "length", words
    if _INNER_PERIOD.search(s):  # e.g., U.S., a.m.
        return "abbrev", words
    for w in words:
        if len(w) > 1 and w.isupper():
            return "caps", words
        if w.lower() in ABBREVIATIONS:
            return "abbrev", words
    # A single capital letter followed by a period is an initial ("J. Smith").
    if _INITIAL.search(s):
        return "abbrev", words
    return "", words


# Whitespace after ., ! or ? (or after a closing quote that follows one),
# before an optionally quoted capital.
_SENT_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"']))\s+(?=[\"']?[A-Z])")


def split_sentences(text: str) -> List[str]:
    """Split running text into sentences at ``.!?`` followed by a capital.

    >>> split_sentences("Drain the moat.  Try a single person! Ok?")
    ['Drain the moat.', 'Try a single person!', 'Ok?']
    """
    text = " ".join(text.split())
    return [p.strip() for p in _SENT_END.split(text) if p.strip()]


def read_fortunes(root: Path = FORTUNES_DIR) -> Iterator[str]:
    """Yield candidate sentences from every fortune file under ``root``.

    Files are read in sorted name order (deterministic); the ``.dat`` indexes
    and ``.u8`` copies are skipped.  Attribution lines (``-- Author``) and
    indented lines (verse, dialogue, code) end a fortune's running text.
    """
    if not root.is_dir():
        raise FileNotFoundError(
            f"{root} not found: apt-get install fortunes (the sentence pool "
            f"of the embedded corpus)"
        )
    for path in sorted(p for p in root.iterdir() if p.is_file() and not p.suffix):
        raw = path.read_bytes().decode("utf-8", errors="replace")
        for fortune in re.split(r"^%\s*$", raw, flags=re.M):
            body = []
            for line in fortune.splitlines():
                if re.match(r"^\s*(--|\u2014)", line) or line.startswith(("\t", "    ")):
                    break
                body.append(line)
            yield from split_sentences(" ".join(body))


def read_wordnet(root: Path = WORDNET_DIR) -> Iterator[str]:
    """Yield WordNet definitions and quoted examples as candidate sentences.

    A data line ends with ``| gloss; "example one"; "example two"``; each
    ``;``-separated part is one candidate (quotes removed).  Definitions get
    a first capital and a final period so the TTS prosody is a statement.
    """
    paths = [root / name for name in WORDNET_FILES]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{', '.join(missing)} not found: apt-get install wordnet-base "
            f"(the sentence pool of the embedded corpus)"
        )
    for path in paths:
        with path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  ") or "|" not in line:
                    continue  # licence header
                gloss = line.split("|", 1)[1]
                for part in gloss.split(";"):
                    part = part.strip()
                    if part.startswith('"'):
                        part = part.strip('"').strip()
                        if part[:1].islower():
                            part = part[0].upper() + part[1:]
                    elif part:
                        part = part[0].upper() + part[1:]
                    if part and part[-1] not in ".!?":
                        part += "."
                    if part:
                        yield part


@dataclass(frozen=True)
class Sentence:
    """One pool entry: what the TTS engine reads and what the model must output.

    Attributes:
        display: original casing and punctuation (fed to the TTS engine).
        transcript: :func:`normalize_transcript` of ``display``.
    """

    display: str
    transcript: str


def filter_sentences(
    candidates: Iterable[str], cfg: FilterConfig = FilterConfig()
) -> List[Sentence]:
    """Keep TTS-safe candidates, deduplicated by normalized transcript.

    The first occurrence wins, so the output order follows the input order.
    Logs a count per rejection reason.
    """
    seen = set()
    out: List[Sentence] = []
    reasons: collections.Counter = collections.Counter()
    for cand in candidates:
        reason, words = _check(cand, cfg)
        if reason:
            reasons[reason] += 1
            continue
        # Equal to normalize_transcript(cand) for an accepted sentence (see
        # _check), without a second regex pass.
        tr = " ".join(words).lower()
        if tr in seen:
            reasons["duplicate"] += 1
            continue
        seen.add(tr)
        out.append(Sentence(display=cand.replace('"', "").strip(), transcript=tr))
    logger.info("sentence filter: kept %d, rejected %s", len(out), dict(reasons))
    return out


def limit_vocabulary(sentences: Sequence[Sentence], vocab_size: int) -> List[Sentence]:
    """Keep sentences whose words are all among the ``vocab_size`` most frequent.

    Frequencies are counted over ``sentences`` themselves; ties are broken by
    the word's spelling so the result is deterministic.  A smaller
    ``vocab_size`` means fewer sentences but fewer test words unseen in
    training (OOV).
    """
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
    counts = collections.Counter(w for s in sentences for w in s.transcript.split())
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    vocab = {w for w, _ in ranked[:vocab_size]}
    return [s for s in sentences if all(w in vocab for w in s.transcript.split())]


@dataclass(frozen=True)
class PoolConfig:
    """How the sentence pool is built.

    Attributes:
        vocab_size: words kept by :func:`limit_vocabulary`.  Measured on the
            full pool: 2000 -> 17k sentences (11k with >= 5 words) and ~1.5-2%
            of test word tokens unseen in 2600 training sentences; 3000 ->
            28k sentences, ~3.5%.
        use_fortunes: include ``/usr/share/games/fortunes``.
        use_wordnet: include WordNet glosses and examples.
        filter: the :class:`FilterConfig`.
    """

    vocab_size: int = 2000
    use_fortunes: bool = True
    use_wordnet: bool = True
    filter: FilterConfig = FilterConfig()


def build_pool(
    cfg: PoolConfig = PoolConfig(),
    fortunes_dir: Path = FORTUNES_DIR,
    wordnet_dir: Path = WORDNET_DIR,
) -> List[Sentence]:
    """The deterministic, deduplicated, vocabulary-limited sentence pool."""
    if not (cfg.use_fortunes or cfg.use_wordnet):
        raise ValueError("PoolConfig: at least one of use_fortunes/use_wordnet must be true")
    candidates: List[str] = []
    if cfg.use_fortunes:
        candidates.extend(read_fortunes(fortunes_dir))
    if cfg.use_wordnet:
        candidates.extend(read_wordnet(wordnet_dir))
    pool = limit_vocabulary(filter_sentences(candidates, cfg.filter), cfg.vocab_size)
    logger.info("sentence pool: %d sentences (vocab_size=%d)", len(pool), cfg.vocab_size)
    return pool
