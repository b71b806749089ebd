"""End-to-end synthesis of the tiny corpus (real TTS engines, ~10 s)."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from espnet_omni.corpus import synth as S
from espnet_omni.corpus.datadir import read_datadir
from espnet_omni.corpus.plan import PLAN_SPLITS, SynthConfig
from espnet_omni.corpus.voices import speakers_by_split

SPLITS = tuple(s for s in PLAN_SPLITS if s != "untranscribed")  # the transcribed splits

pytestmark = pytest.mark.skipif(
    any(shutil.which(b) is None for b in ("espeak-ng", "flite", "festival", "sox")),
    reason="TTS engines not installed (apt-get install espeak-ng flite festival sox)",
)


def _digest(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.wav"))}


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """The tiny corpus rendered twice (nj=2 and nj=1) with the same seed."""
    cfg = SynthConfig.from_size("tiny", seed=0)
    a = tmp_path_factory.mktemp("synth_a")
    b = tmp_path_factory.mktemp("synth_b")
    dirs = S.synthesize(cfg, a, nj=2, progress=False)
    S.synthesize(cfg, b, nj=1, progress=False)
    return cfg, a, b, dirs


def test_splits_are_speaker_and_sentence_disjoint(tiny):
    _, a, _, _ = tiny
    d = {s: read_datadir(a / s) for s in SPLITS}
    spk = {s: set(d[s].utt2spk.values.values()) for s in SPLITS}
    txt = {s: set(d[s].text.values.values()) for s in SPLITS}
    for x, y in (("train", "dev"), ("train", "test"), ("dev", "test")):
        assert spk[x].isdisjoint(spk[y])
    for i, x in enumerate(SPLITS):  # no sentence in two splits, test_seen included
        for y in SPLITS[i + 1:]:
            assert txt[x].isdisjoint(txt[y]), (x, y)
    assert spk["test"] == set(speakers_by_split()["test"])  # 8 utts cover 4 speakers
    assert spk["test_seen"] <= set(speakers_by_split()["train"])  # training voices, new sentences
    assert {s: len(d[s].utts) for s in SPLITS} == {"train": 24, "dev": 8, "test": 8, "test_seen": 8}
    # the LM text pool: no evaluation sentence, every train sentence
    lm = set((a / "lm_pool.txt").read_text().splitlines())
    assert txt["train"] <= lm and not lm & (txt["dev"] | txt["test"] | txt["test_seen"])


def test_same_seed_same_bytes(tiny):
    _, a, b, _ = tiny
    da, db = _digest(a), _digest(b)
    assert len(da) == 48 and da == db
    for split in SPLITS:
        for name in ("text", "utt2spk", "spk2utt", "utt2family"):
            assert (a / split / name).read_bytes() == (b / split / name).read_bytes()


def test_audio_format_and_kaldi_files(tiny):
    _, a, _, _ = tiny
    for split in SPLITS:
        d = read_datadir(a / split)
        utts = [line.split()[0] for line in (a / split / "wav.scp").read_text().splitlines()]
        assert utts == sorted(utts)
        spk2utt = (a / split / "spk2utt").read_text().splitlines()
        assert [line.split()[0] for line in spk2utt] == sorted(line.split()[0] for line in spk2utt)
        for utt in utts:
            spk = d.utt2spk.values[utt]
            assert utt.startswith(spk + "-")
            assert d.utt2family.values[utt] in {"espeak", "flite", "festival"}
            path = Path(d.wav_scp.values[utt])
            assert path.is_absolute() and path.parent == a / "wav" / split
            info = sf.info(str(path))
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert 0.5 < info.duration < 15
            x, _ = sf.read(str(path))
            assert abs(x).max() > 0.05  # not silence; peak level -10..-1 dBFS
            assert d.text.values[utt] and set(d.text.values[utt]) <= set(
                "abcdefghijklmnopqrstuvwxyz' ")
        assert set(d.utt2family.values) == set(utts)
    assert not list((a / "wav").glob(".tmp*"))
    assert not list((a / "wav").rglob(".*.part.wav"))


def test_resume_skips_existing_and_redoes_missing(tiny, tmp_path):
    cfg, a, _, _ = tiny
    out = tmp_path / "c"
    shutil.copytree(a, out)
    wavs = sorted((out / "wav" / "train").glob("*.wav"))
    victim, keep = wavs[0], wavs[1]
    want = victim.read_bytes()
    victim.unlink()
    old = os.stat(keep).st_mtime_ns
    os.utime(keep, ns=(old - 10**9, old - 10**9))  # mark: must stay untouched
    S.synthesize(cfg, out, nj=1, progress=False)
    assert victim.read_bytes() == want
    assert os.stat(keep).st_mtime_ns == old - 10**9


def test_changed_plan_deletes_stale_wavs(tiny, tmp_path):
    cfg, a, _, _ = tiny
    out = tmp_path / "c"
    shutil.copytree(a, out)
    new = SynthConfig(num_train=2, num_dev=1, num_test=1, num_test_seen=1, seed=7)
    S.synthesize(new, out, nj=1, progress=False)
    on_disk = {p.stem for p in (out / "wav").rglob("*.wav")}
    listed = set()
    for split in SPLITS:
        listed |= set(read_datadir(out / split).utts)
    assert on_disk == listed and len(listed) == 5


def test_cli_reports_missing_engine_without_traceback(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))  # no engines on PATH
    res = subprocess.run(
        [sys.executable, "-m", "espnet_omni.corpus.synth", "--out", str(tmp_path / "d"),
         "--size", "tiny"],
        capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[2],
    )
    assert res.returncode == 1
    assert "not found" in res.stderr and "apt-get install" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("voice_id", ["espeak-ng:en-gb+m3", "flite:kal16", "flite:kal16@0.84",
                                      "festival:cmu_us_slt_arctic_hts"])
def test_tempo_and_pitch_are_decoupled(tmp_path, voice_id):
    """Final duration scales as 1/tempo whatever the pitch shift."""
    from espnet_omni.corpus.plan import PlannedUtt
    from espnet_omni.corpus.voices import catalogue, check_available

    voice = next(v for v in catalogue() if v.voice_id == voice_id)
    for split in SPLITS:
        (tmp_path / split).mkdir()
    cases = [(1.0, 0), (0.85, 0), (1.0, 200), (0.85, -200), (1.15, 200)]
    utts = [PlannedUtt(f"x-{i}", "train", voice, "A visit to a strange place will "
                       "bring fresh work.", "", t, c, -3.0) for i, (t, c) in enumerate(cases)]
    S.render_chunk((utts, str(tmp_path), check_available([voice])))
    dur = [sf.info(str(tmp_path / "train" / f"x-{i}.wav")).duration for i in range(len(cases))]
    for (tempo, _), d in zip(cases, dur, strict=True):
        assert d / dur[0] == pytest.approx(1.0 / tempo, rel=0.03)
    x0, _ = sf.read(str(tmp_path / "train" / "x-0.wav"))
    x2, _ = sf.read(str(tmp_path / "train" / "x-2.wav"))
    assert len(x0) != len(x2) or not np.array_equal(x0, x2)  # pitch shift changed audio


def test_pseudo_speaker_warp_moves_the_spectrum(tmp_path):
    """A pseudo-speaker (warp w) is the voice with every frequency scaled by w, same duration."""
    from espnet_omni.corpus.plan import PlannedUtt
    from espnet_omni.corpus.voices import catalogue, check_available

    voices = [v for v in catalogue() if v.voice_id in ("flite:kal16", "flite:kal16@0.84", "flite:kal16@1.19")]
    assert len(voices) == 3
    (tmp_path / "train").mkdir()
    utts = [PlannedUtt(f"x-{i}", "train", v, "A visit to a strange place will bring fresh work.", "",
                       1.0, 0, -3.0) for i, v in enumerate(sorted(voices, key=lambda v: v.warp))]
    S.render_chunk((utts, str(tmp_path), check_available(voices)))
    centroid, dur = [], []
    for i in range(3):
        x, fs = sf.read(str(tmp_path / "train" / f"x-{i}.wav"))
        spec = np.abs(np.fft.rfft(x)) ** 2
        freqs = np.fft.rfftfreq(len(x), 1 / fs)
        centroid.append(float((spec * freqs).sum() / spec.sum()))
        dur.append(len(x) / fs)
    assert centroid[0] < centroid[1] < centroid[2]  # warps 0.84 < 1.0 < 1.19
    assert dur[0] == pytest.approx(dur[1], rel=0.05) and dur[2] == pytest.approx(dur[1], rel=0.05)
