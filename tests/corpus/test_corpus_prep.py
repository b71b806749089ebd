"""LibriVox 'real' set, LibriSpeech prep on a fake tree, and data-dir I/O."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from espnet_omni.corpus import librispeech as L
from espnet_omni.corpus import real as R
from espnet_omni.corpus.datadir import (
    DataDir,
    DataDirError,
    combine,
    read_datadir,
    read_kaldi_map,
    write_datadir,
)

REPO = Path(__file__).resolve().parents[2]


def _tone(n, fs=16000, channels=1):
    t = np.arange(n) / fs
    x = 0.3 * np.sin(2 * np.pi * 220 * t)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


# ---------------------------------------------------------------- real set


@pytest.mark.skipif(not R.LIBRIVOX_DIR.is_dir(), reason="pocketsphinx-testdata not installed")
def test_real_set_from_librivox(tmp_path):
    d = R.prepare_real(tmp_path)
    assert len(d.utts) == 5
    text = read_datadir(tmp_path / "real").text.values
    assert text["librivox-sense_and_sensibility_01_austen_64kb-0880"] == (
        "he was not an ill disposed young man")
    assert all("<s>" not in t and t == t.lower() for t in text.values())
    assert set(d.utt2family.values.values()) == {"librivox"}


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox not installed")
def test_real_set_resamples_non_16k(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    sf.write(src / "a-1.wav", _tone(8000, 8000, channels=2), 8000)  # 1 s, 8 kHz stereo
    sf.write(src / "a-2.wav", _tone(16000), 16000, subtype="PCM_16")
    (src / "transcription").write_text(
        "<s> HELLO there </s> (a-1)\n<s> Good-bye now </s> (a-2)\n")
    d = R.prepare_real(tmp_path / "out", src)
    wav1 = Path(d.wav_scp.values["librivox-a-1"])
    assert wav1 == (tmp_path / "out" / "wav" / "real" / "librivox-a-1.wav").resolve()
    info = sf.info(str(wav1))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert abs(info.duration - 1.0) < 0.01
    assert Path(d.wav_scp.values["librivox-a-2"]) == (src / "a-2.wav").resolve()
    assert d.text.values == {"librivox-a-1": "hello there", "librivox-a-2": "good bye now"}


def test_real_bad_transcription_line(tmp_path):
    (tmp_path / "transcription").write_text("<s> no file id here </s>\n")
    with pytest.raises(DataDirError, match=r"transcription:1"):
        R.prepare_real(tmp_path / "out", tmp_path)
    with pytest.raises(FileNotFoundError, match="pocketsphinx-testdata"):
        R.prepare_real(tmp_path / "out", tmp_path / "nope")


# ---------------------------------------------------------------- LibriSpeech


def _fake_librispeech(root: Path) -> None:
    """Two subsets, 2 speakers x 1 chapter x 2 utterances each, 0.5 s flacs."""
    for subset, speakers in (("dev-clean", ("84", "174")), ("test-other", ("1688",))):
        for spk in speakers:
            chap = root / subset / spk / "121123"
            chap.mkdir(parents=True)
            lines = []
            for i in range(2):
                utt = f"{spk}-121123-{i:04d}"
                sf.write(chap / f"{utt}.flac", _tone(8000), 16000, format="FLAC")
                lines.append(f"{utt} GO DO YOU HEAR {('ZERO', 'ONE')[i]}'S FRIEND")
            (chap / f"{spk}-121123.trans.txt").write_text("\n".join(lines) + "\n")


def test_librispeech_prep(tmp_path):
    root = tmp_path / "LibriSpeech"
    _fake_librispeech(root)
    out = tmp_path / "data"
    written = L.prepare_librispeech(root, ["dev-clean", "test-other"], out)
    assert written == [out / "dev_clean", out / "test_other"]
    d = read_datadir(out / "dev_clean")
    assert d.utts == ["174-121123-0000", "174-121123-0001", "84-121123-0000", "84-121123-0001"]
    assert d.text.values["84-121123-0001"] == "go do you hear one's friend"
    assert d.utt2spk.values["84-121123-0001"] == "84"
    assert set(d.utt2family.values.values()) == {"dev-clean"}
    x, fs = sf.read(d.wav_scp.values["84-121123-0000"])
    assert fs == 16000 and len(x) == 8000
    assert (out / "dev_clean" / "spk2utt").read_text().splitlines()[0].split() == [
        "174", "174-121123-0000", "174-121123-0001"]

    L.prepare_librispeech(root, ["dev-clean", "test-other"], out, combine_as="all")
    both = read_datadir(out / "all")
    assert len(both.utts) == 6
    assert set(both.utt2family.values.values()) == {"dev-clean", "test-other"}


def test_librispeech_errors(tmp_path):
    root = tmp_path / "LibriSpeech"
    _fake_librispeech(root)
    with pytest.raises(FileNotFoundError, match="root .*nope not found"):
        L.prepare_subset(tmp_path / "nope", "dev-clean")
    with pytest.raises(FileNotFoundError, match=r"train-clean-100 not found.*\['dev-clean'"):
        L.prepare_subset(root, "train-clean-100")
    (root / "dev-clean" / "84" / "121123" / "84-121123-0001.flac").unlink()
    with pytest.raises(DataDirError, match=r"84-121123.trans.txt:2: utterance 84-121123-0001"):
        L.prepare_subset(root, "dev-clean")


def test_non_utf8_transcripts_name_file_and_line(tmp_path):
    root = tmp_path / "LibriSpeech"
    _fake_librispeech(root)
    trans = root / "dev-clean" / "84" / "121123" / "84-121123.trans.txt"
    trans.write_bytes(trans.read_bytes().replace(b"FRIEND\n", b"FRI\xc9ND\n", 2))
    with pytest.raises(DataDirError, match=r"84-121123.trans.txt:1: not UTF-8 .*expected UTF-8"):
        L.prepare_subset(root, "dev-clean")
    (tmp_path / "transcription").write_bytes(b"<s> hello </s> (a-1)\n<s> caf\xe9 </s> (a-2)\n")
    with pytest.raises(DataDirError, match=r"transcription:2: not UTF-8 .*expected UTF-8"):
        R.parse_transcription(tmp_path / "transcription")


def test_librispeech_cli_missing_root(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "espnet_omni.corpus.librispeech", "--root",
         str(tmp_path / "none"), "--out", str(tmp_path / "d"), "dev-clean"],
        capture_output=True, text=True, cwd=REPO,
    )
    assert res.returncode == 1
    assert "not found" in res.stderr and "Traceback" not in res.stderr


# ---------------------------------------------------------------- datadir


def test_datadir_roundtrip_sorted(tmp_path):
    d = DataDir.from_dicts(
        wav_scp={"b_1-2": "/x/2.wav", "b_1-1": "/x/1.wav", "a-9": "/x/9.wav"},
        text={"b_1-2": "two", "b_1-1": "one", "a-9": "nine"},
        utt2spk={"b_1-2": "b_1", "b_1-1": "b_1", "a-9": "a"},
    )
    d.validate()
    write_datadir(d, tmp_path)
    assert (tmp_path / "wav.scp").read_text().splitlines()[0] == "a-9 /x/9.wav"
    assert (tmp_path / "spk2utt").read_text() == "a a-9\nb_1 b_1-1 b_1-2\n"
    assert not (tmp_path / "utt2family").exists()
    back = read_datadir(tmp_path)
    assert back.text.values == d.text.values
    assert back.text.where("b_1-1") == f"{tmp_path / 'text'}:2"


def test_datadir_errors(tmp_path):
    (tmp_path / "text").write_text("u-1 hi\nu-2 there\nu-1 again\n")
    with pytest.raises(DataDirError, match=r"text:3: duplicate key 'u-1'"):
        read_kaldi_map(tmp_path / "text")
    bad = DataDir.from_dicts({"u-1": "/a.wav"}, {"u-1": "hi"}, {"u-1": "v"})
    with pytest.raises(DataDirError, match="does not start with its speaker id 'v'"):
        bad.validate()
    bad.validate(require_speaker_prefix=False)
    with pytest.raises(DataDirError, match="not in text"):
        DataDir.from_dicts({"u-1": "/a.wav"}, {}, {"u-1": "u"}).validate()
    with pytest.raises(DataDirError, match="no whitespace"):
        DataDir.from_dicts({"u-1": "/a"}, {"u-1": "a"}, {"u-1": "u x"}).validate()
    # Kaldi's ids: LibriSpeech speaker-chapter, ESPnet's speed perturbation prefix.
    DataDir.from_dicts({"103-1240-0000": "/a", "sp0.9-kal-01": "/b"},
                       {"103-1240-0000": "a", "sp0.9-kal-01": "b"},
                       {"103-1240-0000": "103-1240", "sp0.9-kal-01": "sp0.9-kal"}).validate()
    # speaker 'a-b' of 'a-b-1' sorts before speaker 'a' of 'a-c': not Kaldi-sortable
    with pytest.raises(DataDirError, match="must also sort by speaker"):
        DataDir.from_dicts({"a-b-1": "/a", "a-c": "/b"}, {"a-b-1": "x", "a-c": "y"},
                           {"a-b-1": "a-b", "a-c": "a"}).validate()
    with pytest.raises(DataDirError, match="also in an earlier"):
        combine([bad, bad])
    with pytest.raises(DataDirError, match="not found"):
        read_datadir(tmp_path / "missing")
