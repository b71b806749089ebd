"""align_counts (RapidFuzz) against a plain dynamic programme kept here as the reference.

The reference is the textbook Levenshtein table over (errors, -substitutions)
pairs: the fewest errors, and among those the most substitutions (sclite's
choice of a substitution over a deletion + insertion). Every count is compared,
so a swapped deletion/insertion or a lost tie-break fails, not only the total.
"""

import random

import pytest

from espnet_omni.scoring.wer import align_counts, char_counts, word_counts


def reference_counts(ref, hyp):
    """(sub, del, ins, ref_len) of the minimal alignment with the most substitutions."""
    n, m = len(ref), len(hyp)
    # best[i][j] = (errors, -sub, sub, dele, ins) of ref[:i] vs hyp[:j]; min() picks the best cell
    best = [[None] * (m + 1) for _ in range(n + 1)]
    best[0][0] = (0, 0, 0, 0, 0)
    for i in range(n + 1):
        for j in range(m + 1):
            if i == j == 0:
                continue
            cands = []
            if i and j:
                e, _, s, d, k = best[i - 1][j - 1]
                x = int(ref[i - 1] != hyp[j - 1])
                cands.append((e + x, -(s + x), s + x, d, k))
            if i:
                e, _, s, d, k = best[i - 1][j]
                cands.append((e + 1, -s, s, d + 1, k))
            if j:
                e, _, s, d, k = best[i][j - 1]
                cands.append((e + 1, -s, s, d, k + 1))
            best[i][j] = min(cands)
    _, _, s, d, k = best[n][m]
    return s, d, k, n


def counts(c):
    return c.sub, c.dele, c.ins, c.ref_len


def random_pairs(seed, count, alphabet_ref, alphabet_hyp, max_len):
    rng = random.Random(seed)
    for _ in range(count):
        yield ([rng.choice(alphabet_ref) for _ in range(rng.randint(0, max_len))],
               [rng.choice(alphabet_hyp) for _ in range(rng.randint(0, max_len))])


EDGE = [([], []), ([], ["a"]), (["a"], []), ([], list("abc")), (list("abc"), []), (["a"], ["a"]),
        (["a"], ["b"]), (list("ab"), list("ba")), (list("ab"), list("bc")), (list("aaaa"), list("aa"))]


@pytest.mark.parametrize("ref,hyp", EDGE)
def test_edge_cases(ref, hyp):
    assert counts(align_counts(ref, hyp)) == reference_counts(ref, hyp)


def test_empty_reference_or_hypothesis():
    assert counts(align_counts([], [])) == (0, 0, 0, 0)
    assert counts(align_counts([], "x y z".split())) == (0, 0, 3, 0)
    assert counts(align_counts("x y".split(), [])) == (0, 2, 0, 2)
    assert counts(word_counts("", "  ")) == (0, 0, 0, 0)
    assert counts(char_counts("", "ab c")) == (0, 0, 4, 0)


def test_substitutions_preferred_over_deletion_plus_insertion():
    # a b -> b c: two substitutions, or delete a, keep b, insert c; both cost 2
    assert counts(align_counts(list("ab"), list("bc"))) == (2, 0, 0, 2)


@pytest.mark.parametrize("seed,alpha_ref,alpha_hyp,max_len", [
    (0, "ab", "abc", 8),   # small alphabets: many ties between alignments
    (1, "abc", "abcd", 12),
    (2, "abcdefghij", "abcdefghijk", 25),
])
def test_random_token_sequences_match_reference(seed, alpha_ref, alpha_hyp, max_len):
    for ref, hyp in random_pairs(seed, 400, alpha_ref, alpha_hyp, max_len):
        assert counts(align_counts(ref, hyp)) == reference_counts(ref, hyp), (ref, hyp)


def test_multi_character_tokens_and_word_and_char_levels():
    rng = random.Random(3)
    vocab = ["the", "a", "cat", "sat", "on", "mat", "th", "e", "ca t"]
    for _ in range(200):
        ref = [rng.choice(vocab) for _ in range(rng.randint(0, 10))]
        hyp = [rng.choice(vocab) for _ in range(rng.randint(0, 10))]
        assert counts(align_counts(ref, hyp)) == reference_counts(ref, hyp)
        r, h = " ".join(ref), " ".join(hyp)
        assert counts(word_counts(r, h)) == reference_counts(r.split(), h.split())
        assert counts(char_counts(r, h)) == reference_counts(list(" ".join(r.split())), list(" ".join(h.split())))


def test_reference_would_catch_a_swapped_deletion_and_insertion():
    """The comparison above is strict enough: swapping D and I is caught."""
    pairs = list(random_pairs(4, 100, "abc", "abcd", 10))
    swapped = [(c.sub, c.ins, c.dele, c.ref_len) for c in (align_counts(r, h) for r, h in pairs)]
    assert swapped != [reference_counts(r, h) for r, h in pairs]


def test_corpus_counts_sum_utterances_and_count_missing_hypotheses_as_empty():
    from espnet_omni.scoring.wer import ErrorCounts, corpus_counts

    ref = {"a": "the cat sat", "b": "on the mat", "c": "hello"}
    hyp = {"a": "the cat sad", "b": "on mat"}  # c missing: one deletion
    words = corpus_counts(ref, hyp)
    assert (words.sub, words.dele, words.ins, words.ref_len) == (1, 2, 0, 7)
    assert words.n_utts == 3
    assert corpus_counts(ref, hyp, char_counts) == sum(
        (char_counts(r, hyp.get(k, "")) for k, r in ref.items()), ErrorCounts())
