"""Voice catalogue, availability check, and the (pure) synthesis plan."""

import collections

import pytest

from espnet_omni.corpus import plan as P
from espnet_omni.corpus import voices as V
from espnet_omni.corpus.text import Sentence, normalize_transcript


def test_splits_are_speaker_disjoint():
    spk = V.speakers_by_split()
    assert set(spk["train"]).isdisjoint(spk["dev"])
    assert set(spk["train"]).isdisjoint(spk["test"])
    assert set(spk["dev"]).isdisjoint(spk["test"])
    # Every voice of a speaker is in that speaker's split.
    split_of = {}
    for v in V.catalogue():
        assert split_of.setdefault(v.speaker, v.split) == v.split, v


def test_pseudo_speakers_are_train_only_warps_of_the_recorded_humans():
    pseudo = [v for v in V.catalogue() if v.is_pseudo]
    assert pseudo and all(v.split == "train" for v in pseudo)
    assert {v.speaker for v in pseudo} == {V.pseudo_speaker(s, w) for s in ("kal", "slt") for w in V.PSEUDO_WARPS}
    for v in pseudo:  # a warped rendering of a train voice, its own speaker
        assert any(b.engine == v.engine and b.name == v.name and not b.is_pseudo and b.split == "train"
                   for b in V.catalogue())
        assert v.voice_id.endswith(f"@{v.warp:.2f}") and v.speaker != v.speaker.split("_vtl")[0]
    ids = [v.voice_id for v in V.catalogue()]
    assert len(ids) == len(set(ids))
    # the extra espeak variants are train-only: dev and test audio is unchanged
    for v in V.catalogue():
        if v.engine == "espeak-ng" and v.split != "train":
            assert v.name.partition("+")[2] in V.ESPEAK_VARIANTS
    with pytest.raises(ValueError, match="warp"):
        V.Voice("flite", "kal", "kal", "flite", "train", warp=3.0)


def test_one_human_behind_two_engines_is_one_speaker():
    by_speaker = collections.defaultdict(set)
    for v in V.catalogue():
        by_speaker[v.speaker].add(v.voice_id)
    assert {"flite:kal", "flite:kal16", "festival:kal_diphone"} <= by_speaker["kal"]
    assert {"flite:slt", "festival:cmu_us_slt_arctic_hts"} <= by_speaker["slt"]
    assert "flite:awb_time" not in {v.voice_id for v in V.catalogue()}


def test_held_out_families_and_espeak_accent_speakers():
    test = V.voices_for_split("test")
    assert {v.family for v in test} == {"espeak", "flite", "festival"}
    for v in V.catalogue():
        if v.engine == "espeak-ng":
            assert v.speaker == v.name.split("+")[0].replace("-", "_")
    with pytest.raises(ValueError, match="valid"):
        V.voices_for_split("eval")


def test_voice_validates_fields():
    with pytest.raises(ValueError, match="family"):
        V.Voice("flite", "kal", "kal", "mbrola", "train")


def test_missing_engine_names_package(monkeypatch):
    real_which = V.shutil.which
    monkeypatch.setattr(V.shutil, "which", lambda b: None if b == "flite" else real_which(b))
    flite = [v for v in V.catalogue() if v.engine == "flite"]
    with pytest.raises(V.MissingEngineError, match="flite not found.*apt-get install flite"):
        V.check_available(flite)
    monkeypatch.setattr(V.shutil, "which", lambda b: None)
    with pytest.raises(V.MissingEngineError, match="sox not found.*apt-get install sox"):
        V.check_available(flite)


def test_missing_voices_name_package(monkeypatch, tmp_path):
    monkeypatch.setattr(V.shutil, "which", lambda b: f"/usr/bin/{b}")
    monkeypatch.setattr(V, "_flite_voices", lambda binary: ["kal", "kal16", "slt", "awb"])
    with pytest.raises(V.MissingEngineError, match=r"\['rms'\]"):
        V.check_available([v for v in V.catalogue() if v.engine == "flite"])
    ked = [v for v in V.catalogue() if v.name == "ked_diphone"]
    with pytest.raises(V.MissingEngineError, match="apt-get install festvox-kdlpc16k"):
        V.check_available(ked, festival_voice_root=tmp_path)
    monkeypatch.setattr(V, "_espeak_voices", lambda binary: (["en-gb"], ["m1"]))
    with pytest.raises(V.MissingEngineError, match="en-us"):
        V.check_available([v for v in V.catalogue() if v.name == "en-us+m1"])


def _fake_pool(n):
    """``n`` distinct sentences: "Sentence number bcd." (digits spelled as letters)."""
    words = ["".join(chr(ord("a") + int(c)) for c in str(i)) for i in range(n)]
    return [Sentence(f"Sentence number {w}.", normalize_transcript(f"sentence number {w}"))
            for w in words]


def test_allocate_exact_counts():
    assert P.allocate(8, [("a", 0.5), ("b", 0.3), ("c", 0.2)]) == {"a": 4, "b": 2, "c": 2}
    assert P.allocate(7, [("a", 1.0), ("b", 1.0), ("c", 1.0)]) == {"a": 3, "b": 2, "c": 2}
    for n in range(0, 30):
        assert sum(P.allocate(n, [("x", 0.1), ("y", 0.7), ("z", 0.2)]).values()) == n
    with pytest.raises(ValueError):
        P.allocate(3, [("x", 0.0)])


def test_plan_is_deterministic_and_disjoint():
    cfg = P.SynthConfig(num_train=40, num_dev=10, num_test=12, num_test_seen=6, seed=3)
    pool = _fake_pool(500)
    plan = P.build_plan(cfg, pool)
    assert plan == P.build_plan(cfg, pool)
    assert plan != P.build_plan(P.SynthConfig(num_train=40, num_dev=10, num_test=12, num_test_seen=6, seed=4), pool)
    by_split = collections.defaultdict(list)
    for u in plan:
        by_split[u.split].append(u)
        assert u.utt_id.startswith(u.voice.speaker + "-")
        assert u.voice.split == P.VOICE_SPLIT[u.split]
        aug = cfg.train_augment if u.split == "train" else cfg.augment
        assert aug.tempo_min <= u.tempo <= aug.tempo_max
        assert abs(u.pitch_cents) <= aug.pitch_cents
    assert {k: len(v) for k, v in by_split.items()} == {"train": 40, "dev": 10, "test": 12, "test_seen": 6}
    texts = {k: {u.transcript for u in v} for k, v in by_split.items()}
    assert sum(len(t) for t in texts.values()) == 68  # no sentence twice
    assert len({u.utt_id for u in plan}) == 68
    # test_seen: the training voices as recorded (no pseudo-speaker), new sentences
    assert all(P.is_base_voice(u.voice) for u in by_split["test_seen"])
    # Every speaker of the test split is heard, and families follow the weights.
    assert {u.voice.speaker for u in by_split["test"]} == set(V.speakers_by_split()["test"])
    fam = collections.Counter(u.voice.family for u in by_split["test"])
    assert fam == P.allocate(12, list(cfg.family_weights))


def test_plan_rejects_too_small_pool_and_bad_config():
    with pytest.raises(ValueError, match="pool has only 4 sentences outside its reserved slice"):
        P.build_plan(P.SynthConfig(num_train=4, num_dev=1, num_test=1, num_test_seen=1), _fake_pool(5))
    with pytest.raises(ValueError, match="num_dev"):
        P.SynthConfig(num_dev=0)
    with pytest.raises(ValueError, match="mbrola"):
        P.SynthConfig(family_weights=(("mbrola", 1.0),))
    with pytest.raises(ValueError, match="zero weight"):
        P.build_plan(P.SynthConfig(num_train=4, num_dev=1, num_test=1, num_test_seen=1,
                                   family_weights=(("festival", 1.0),)), _fake_pool(50))
    with pytest.raises(ValueError, match="train_voices"):
        P.SynthConfig(train_voices="more")
    with pytest.raises(ValueError, match="valid"):
        P.SynthConfig.from_size("huge")
    with pytest.raises(ValueError, match="tempo"):
        P.AugmentConfig(tempo_min=1.2, tempo_max=1.1)


def test_from_size_and_num_utts():
    tiny = P.SynthConfig.from_size("tiny")
    assert (tiny.num_train, tiny.num_dev, tiny.num_test, tiny.num_test_seen) == P.SIZES["tiny"]
    cfg = P.SynthConfig.from_size("default", num_utts=320)
    assert sum(cfg.split_sizes().values()) == 320
    assert cfg.num_dev == cfg.num_test == cfg.num_test_seen == 20  # 200/3200 of 320


def test_reserved_slice_is_in_no_split_and_no_lm_text():
    """The slice for evaluations from outside the recipe: sha1(transcript) % 10 == 0."""
    import hashlib

    pool = _fake_pool(800)
    reserved = {s.transcript for s in pool
                if int(hashlib.sha1(s.transcript.encode()).hexdigest(), 16) % 10 == 0}
    assert 40 < len(reserved) < 120  # about a tenth
    cfg = P.SynthConfig(num_train=300, num_dev=40, num_test=40, num_test_seen=40)
    plan = P.build_plan(cfg, pool)
    assert not reserved & {u.transcript for u in plan}
    lm = {s.transcript for s in P.lm_pool(cfg, pool)}
    assert not reserved & lm
    held = {u.transcript for u in plan if u.split != "train"}
    assert not held & lm and {u.transcript for u in plan if u.split == "train"} <= lm
    assert len(lm) + len(held) + len(reserved) == len(pool)  # nothing else is lost


def test_train_voices_base_changes_train_only():
    pool = _fake_pool(600)
    full = P.build_plan(P.SynthConfig(num_train=200, num_dev=20, num_test=20, num_test_seen=20,
                                      train_voices="all"), pool)
    base = P.build_plan(P.SynthConfig(num_train=200, num_dev=20, num_test=20, num_test_seen=20), pool)
    assert [u for u in full if u.split != "train"] == [u for u in base if u.split != "train"]
    assert {u.transcript for u in full if u.split == "train"} == {u.transcript for u in base if u.split == "train"}
    assert any(u.voice.is_pseudo for u in full if u.split == "train")
    assert all(P.is_base_voice(u.voice) for u in base if u.split == "train")
    assert all(abs(u.pitch_cents) <= P.AugmentConfig().pitch_cents for u in base)


def test_untranscribed_split_is_extra_training_voice_audio_on_unused_sentences():
    """num_untranscribed adds audio for self-supervised pretraining: training voices (base ones by
    default), sentences of no other split and outside the reserved slice; every other split and
    the LM text stay as they were."""
    import hashlib

    pool = _fake_pool(800)
    kw = dict(num_train=200, num_dev=20, num_test=20, num_test_seen=20)
    plain = P.build_plan(P.SynthConfig(**kw), pool)
    cfg = P.SynthConfig(**kw, num_untranscribed=150)
    extra = P.build_plan(cfg, pool)
    assert [u for u in extra if u.split != "untranscribed"] == plain
    untr = [u for u in extra if u.split == "untranscribed"]
    assert len(untr) == 150 and len({u.utt_id for u in extra}) == len(extra)
    assert {u.transcript for u in untr}.isdisjoint({u.transcript for u in plain})
    assert not any(int(hashlib.sha1(u.transcript.encode()).hexdigest(), 16) % 10 == 0 for u in untr)
    assert all(u.voice.split == "train" and P.is_base_voice(u.voice) for u in untr)
    assert P.lm_pool(cfg, pool) == P.lm_pool(P.SynthConfig(**kw), pool)
    with pytest.raises(ValueError, match="num_untranscribed=9999: only"):
        P.build_plan(P.SynthConfig(**kw, num_untranscribed=9999), pool)
    with pytest.raises(ValueError, match="num_untranscribed must be >= 0"):
        P.SynthConfig(num_untranscribed=-1)
