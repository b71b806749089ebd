"""Sentence extraction, filtering, vocabulary limit and the normalizer."""

import pytest

from espnet_omni.corpus import text as T


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Hello, World!", "hello world"),
        ("  A long-forgotten   friend.  ", "a long forgotten friend"),
        ("'Quoted' words and the students' books", "quoted words and the students books"),
        ("Don't stop -- it's O'Brien's", "don't stop it's o'brien's"),
        ("<s> HE WAS NOT </s>", "he was not"),
        ("caf\u00e9 na\u00efve", "caf na ve"),  # non-ASCII letters are not a-z
        ("It\u2019s fine", "it's fine"),  # typographic apostrophe
        ("...", ""),
    ],
)
def test_normalize_transcript(raw, expected):
    assert T.normalize_transcript(raw) == expected


def test_normalize_is_idempotent_and_charset():
    s = T.normalize_transcript("Well -- I'd say: \"yes\"; 'no'!  OK?")
    assert s == T.normalize_transcript(s)
    assert set(s) <= set("abcdefghijklmnopqrstuvwxyz' ")
    assert "  " not in s and s == s.strip()


@pytest.mark.parametrize(
    "sentence, reason",
    [
        ("A gift of a flower will soon be made to you.", ""),
        ("He said \"go home\" and left quickly.", ""),
        ("It happened in 1984 in the city.", "chars"),
        ("Visit www.example.com for more news.", "abbrev"),
        ("Mail me at someone@example.org today.", "chars"),
        ("Send it to http://host/path right now.", "chars"),
        ("The NASA rocket went very high.", "caps"),
        ("After your lover has gone you will still have PEANUT BUTTER!", "caps"),
        ("Mr Smith went to the market.", "abbrev"),
        ("The U.S. is a large country.", "abbrev"),
        ("Ask J. Smith about the meeting.", "abbrev"),
        ("Salt, pepper, etc are all fine.", "abbrev"),
        ("He said \"go home and left.", "quote"),
        ("Two words.", "length"),
        (" ".join(["word"] * 21) + ".", "length"),
        ("Use (parentheses) sparingly in life.", "chars"),
        ("Caf\u00e9 society is rather fun.", "chars"),
    ],
)
def test_reject_reason(sentence, reason):
    assert T.reject_reason(sentence) == reason


def test_length_bounds_are_inclusive_and_configurable():
    cfg = T.FilterConfig(min_words=2, max_words=4)
    assert T.reject_reason("Two words.", cfg) == ""
    assert T.reject_reason("One.", cfg) == "length"
    assert T.reject_reason("a b c d", cfg) == ""
    assert T.reject_reason("a b c d e", cfg) == "length"
    # Hyphenated words count as two words, as the transcript does.
    assert T.reject_reason("long-forgotten friends are", cfg) == ""
    assert T.reject_reason("long-forgotten old friends are", cfg) == "length"


def test_filter_config_rejects_bad_bounds():
    with pytest.raises(ValueError, match="min_words"):
        T.FilterConfig(min_words=5, max_words=3)


def test_split_sentences():
    got = T.split_sentences('He left.  She stayed! "Why?" Nobody knew. the end.')
    assert got == ["He left.", "She stayed!", '"Why?"', "Nobody knew. the end."]


def test_filter_sentences_dedups_by_transcript_and_strips_quotes():
    cands = [
        'The cat sat "down" here.',
        "The cat sat down here!",  # same transcript
        "It cost 5 dollars to buy.",
        "A fine day for a walk.",
    ]
    got = T.filter_sentences(cands)
    assert [s.transcript for s in got] == ["the cat sat down here", "a fine day for a walk"]
    assert got[0].display == "The cat sat down here."
    for s in got:
        assert s.transcript == T.normalize_transcript(s.display)


def test_limit_vocabulary_keeps_only_in_vocab_sentences():
    sents = [T.Sentence(d, T.normalize_transcript(d)) for d in
             ["the cat is here", "the dog is here", "the cat is gone", "a zebra eats grass"]]
    # Counts: the 3, is 3, here 2, cat 2, dog 1, gone 1, a 1, zebra 1, ...
    got = T.limit_vocabulary(sents, 4)
    assert [s.transcript for s in got] == ["the cat is here"]
    assert T.limit_vocabulary(sents, 100) == sents
    with pytest.raises(ValueError):
        T.limit_vocabulary(sents, 0)


def test_read_fortunes_fake_dir(tmp_path):
    (tmp_path / "wisdom").write_text(
        "A visit to a strange place will bring fresh work. Smile more.\n%\n"
        "Never trust a quiet cat.\n\t\t-- Somebody Famous\n%\n"
        "Dialog line one is here.\n    indented code line\n"
    )
    (tmp_path / "wisdom.dat").write_bytes(b"\x00\x01binary")
    got = list(T.read_fortunes(tmp_path))
    assert got == [
        "A visit to a strange place will bring fresh work.",
        "Smile more.",
        "Never trust a quiet cat.",
        "Dialog line one is here.",
    ]


def test_read_wordnet_fake_dir(tmp_path):
    line = ('00039297 04 n 01 contact 2 005 @ 00039021 n 0000 | close interaction; '
            '"they kept in daily contact"; "we met again"  \n')
    (tmp_path / "data.noun").write_text("  1 licence header line\n" + line)
    for name in ("data.verb", "data.adj", "data.adv"):
        (tmp_path / name).write_text("")
    assert list(T.read_wordnet(tmp_path)) == [
        "Close interaction.", "They kept in daily contact.", "We met again."
    ]


def test_missing_sources_name_the_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install fortunes"):
        list(T.read_fortunes(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="apt-get install wordnet-base"):
        list(T.read_wordnet(tmp_path))
