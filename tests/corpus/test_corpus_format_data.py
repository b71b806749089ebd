"""format_data: every bad-input case is named, `drop` keeps only good ones."""

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from espnet_omni.corpus.datadir import DataDirError, read_datadir, read_kaldi_map
from espnet_omni.corpus.format_data import FormatConfig, format_datadir

REPO = Path(__file__).resolve().parents[2]
FS = 16000


def _write(path: Path, n: int, fs: int = FS, channels: int = 1) -> None:
    x = 0.1 * np.random.default_rng(0).standard_normal((n, channels))
    sf.write(path, x if channels > 1 else x[:, 0], fs, subtype="PCM_16")


def _make_dir(tmp_path: Path, bad: str = "") -> Path:
    """A data dir with two good 1 s utterances plus, optionally, one bad case."""
    wavs = tmp_path / "wavs"
    wavs.mkdir(exist_ok=True)
    scp = {}
    text = {"s-good1": "hello world", "s-good2": "good bye"}
    for utt in ("s-good1", "s-good2"):
        _write(wavs / f"{utt}.wav", FS)
        scp[utt] = str(wavs / f"{utt}.wav")
    utt = "s-bad"
    path = wavs / "bad.wav"
    if bad == "missing":
        scp[utt] = str(wavs / "nope.wav")
    elif bad == "corrupt":
        path.write_bytes(b"RIFF\x00\x00garbage, not a wav file at all" * 3)
        scp[utt] = str(path)
    elif bad == "empty_audio":
        _write(path, 0)
        scp[utt] = str(path)
    elif bad == "stereo":
        _write(path, FS, channels=2)
        scp[utt] = str(path)
    elif bad == "8k":
        _write(path, 8000, fs=8000)
        scp[utt] = str(path)
    elif bad == "empty_text":
        _write(path, FS)
        scp[utt] = str(path)
    elif bad == "no_wav_entry":
        pass
    elif bad == "short":
        _write(path, FS // 10)
        scp[utt] = str(path)
    elif bad in ("truncated", "truncated_flac"):  # a copy interrupted half-way
        path = path.with_suffix(".flac" if bad == "truncated_flac" else ".wav")
        _write(path, FS)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        scp[utt] = str(path)
    elif bad in ("nan", "inf"):  # float wav files can hold both
        x = np.zeros(FS, dtype=np.float32)
        x[FS // 2] = np.nan if bad == "nan" else np.inf
        sf.write(path, x, FS, subtype="FLOAT")
        scp[utt] = str(path)
    if bad:
        text[utt] = "" if bad == "empty_text" else "some words"
    d = tmp_path / "data"
    d.mkdir(exist_ok=True)
    # Files are written sorted, so "s-bad" (< "s-good1") is on line 1.
    (d / "wav.scp").write_text("".join(f"{u} {scp[u]}\n" for u in sorted(scp)))
    (d / "text").write_text("".join(f"{u} {text[u]}\n".replace(" \n", "\n")
                                    for u in sorted(text)))
    (d / "utt2spk").write_text("".join(f"{u} s\n" for u in sorted(set(scp) | set(text))))
    return d


@pytest.mark.parametrize(
    "bad, file, expect",
    [
        ("missing", "wav.scp:1", "nope.wav not found"),
        ("corrupt", "wav.scp:1", "unreadable"),
        ("empty_audio", "wav.scp:1", "has no samples"),
        ("stereo", "wav.scp:1", "2 channels; expected 1"),
        ("8k", "wav.scp:1", "8000 Hz; expected 16000 Hz"),
        ("empty_text", "text:1", "empty transcript"),
        ("no_wav_entry", "text:1", "no line in wav.scp"),
        ("truncated", "wav.scp:1", "is truncated: its data chunk declares 32000 bytes of samples "
                                   "but only 15978 follow the header (16000 frames, 1.00 s; "
                                   "present: 7989 frames)"),
        ("truncated_flac", "wav.scp:1", "is truncated: its header declares 16000 frames"),
        ("nan", "wav.scp:1", "holds NaN or inf samples in 1 of 16000 frames (the first at 0.500 s)"),
        ("inf", "wav.scp:1", "NaN or inf samples"),
    ],
)
def test_fail_names_file_line_and_utt(tmp_path, bad, file, expect):
    d = _make_dir(tmp_path, bad)
    with pytest.raises(DataDirError) as err:
        format_datadir(d, tmp_path / "out")
    msg = str(err.value)
    assert f"{d / file}" in msg and "'s-bad'" in msg and expect in msg, msg
    assert not (tmp_path / "out").exists()

    out = format_datadir(d, tmp_path / "out", FormatConfig(on_error="drop"))
    assert out.utts == ["s-good1", "s-good2"]
    back = read_datadir(tmp_path / "out")
    assert back.utt2num_samples.values == {"s-good1": str(FS), "s-good2": str(FS)}
    assert sorted(back.text.values) == ["s-good1", "s-good2"]
    assert (tmp_path / "out" / "spk2utt").read_text() == "s s-good1 s-good2\n"


def test_clean_dir_passes_and_duration_filter(tmp_path):
    d = _make_dir(tmp_path, "short")  # 0.1 s: a duration drop, not an error
    out = format_datadir(d, tmp_path / "out", FormatConfig(min_sec=0.5, max_sec=20))
    assert out.utts == ["s-good1", "s-good2"]
    out = format_datadir(d, tmp_path / "out2", FormatConfig(min_sec=0.05, max_sec=0.5))
    assert out.utts == ["s-bad"]
    with pytest.raises(DataDirError, match="no utterance left"):
        format_datadir(d, tmp_path / "out3", FormatConfig(min_sec=5, max_sec=20))


def test_every_utterance_kept_unless_limits_are_given(tmp_path, caplog):
    """Evaluation sets (no limits) keep every duration; train limits drop with a warning."""
    d = _make_dir(tmp_path, "short")  # 0.1 s
    _write(tmp_path / "wavs" / "long.wav", 21 * FS)  # 21 s
    for name, line in (("wav.scp", f"s-long {tmp_path / 'wavs' / 'long.wav'}"),
                       ("text", "s-long a long one"), ("utt2spk", "s-long s")):  # fmt: skip
        with (d / name).open("a") as f:
            f.write(line + "\n")
    with caplog.at_level(logging.INFO):
        out = format_datadir(d, tmp_path / "test", FormatConfig())
    assert out.utts == ["s-bad", "s-good1", "s-good2", "s-long"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    caplog.clear()
    out = format_datadir(d, tmp_path / "train", FormatConfig(min_sec=0.5, max_sec=20))
    assert out.utts == ["s-good1", "s-good2"]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == [f"{d}: dropped 2 of 4 utterances by duration: 1 shorter than 0.5 s, "
                      f"1 longer than 20 s (--min_sec/--max_sec: for training data only)"]


@pytest.mark.parametrize("name", ["text", "wav.scp", "utt2spk"])
def test_non_utf8_line_names_file_and_line(tmp_path, name):
    d = _make_dir(tmp_path)
    lines = (d / name).read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].rstrip(b"\n") + b" caf\xe9\n"  # Latin-1 on line 2
    (d / name).write_bytes(b"".join(lines))
    expect = f"{d / name}:2: not UTF-8 (byte 0xe9 at byte"
    for read in (lambda: format_datadir(d, tmp_path / "out"), lambda: read_kaldi_map(d / name)):
        with pytest.raises(DataDirError) as err:
            read()
        assert expect in str(err.value) and "expected UTF-8 text" in str(err.value), err.value


def test_missing_utt2spk_line_and_bad_config(tmp_path):
    d = _make_dir(tmp_path)
    (d / "utt2spk").write_text("s-good1 s\n")
    with pytest.raises(DataDirError, match=r"wav.scp:2: utterance 's-good2'.*utt2spk"):
        format_datadir(d, tmp_path / "out")
    with pytest.raises(ValueError, match="valid"):
        FormatConfig(on_error="ignore")
    with pytest.raises(ValueError, match="min_sec"):
        FormatConfig(min_sec=3, max_sec=2)


def test_cli_exit_code_and_message(tmp_path):
    d = _make_dir(tmp_path, "stereo")
    cmd = [sys.executable, "-m", "espnet_omni.corpus.format_data",
           "--in", str(d), "--out", str(tmp_path / "out")]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 1
    assert "s-bad" in res.stderr and "Traceback" not in res.stderr
    res = subprocess.run(cmd + ["--on_error", "drop"], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert "not_mono" in res.stderr  # the per-reason count is logged
