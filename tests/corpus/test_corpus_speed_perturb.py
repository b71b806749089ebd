"""Speed perturbation of a data dir (ESPnet's asr.sh way): ids, speakers, audio, resume."""

import shutil

import numpy as np
import pytest
import soundfile as sf

from espnet_omni.corpus import speed_perturb as SP
from espnet_omni.corpus.datadir import DataDir, read_datadir, write_datadir

pytestmark = pytest.mark.skipif(shutil.which("sox") is None, reason="sox not installed")


@pytest.fixture
def src(tmp_path):
    rng = np.random.default_rng(0)
    wav, text, spk = {}, {}, {}
    for utt, s in (("kal-000001", "kal"), ("kal-000002", "kal"), ("slt-000003", "slt")):
        p = tmp_path / f"{utt}.wav"
        t = np.arange(16000) / 16000
        sf.write(p, 0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(16000), 16000,
                 subtype="PCM_16")
        wav[utt], text[utt], spk[utt] = str(p), f"words of {utt[-1]}", s
    d = DataDir.from_dicts(wav, text, spk, {u: "flite" for u in wav})
    write_datadir(d, tmp_path / "train")
    return read_datadir(tmp_path / "train")


def test_each_factor_is_its_own_speaker_with_scaled_audio(src, tmp_path):
    out = tmp_path / "train_sp"
    SP.main(["--in", str(src.path), "--out", str(out), "--factors", "0.9", "1.0", "1.1", "--nj", "2"])
    d = read_datadir(out)
    d.validate()
    assert len(d.utts) == 9
    assert d.utt2spk.values["sp0.9-kal-000001"] == "sp0.9-kal"
    assert d.utt2spk.values["kal-000001"] == "kal" and d.wav_scp.values["kal-000001"] == src.wav_scp.values["kal-000001"]
    assert d.text.values["sp1.1-slt-000003"] == src.text.values["slt-000003"]
    assert d.utt2family.values["sp1.1-slt-000003"] == "flite"
    for f in (0.9, 1.1):
        x, fs = sf.read(d.wav_scp.values[f"sp{f:g}-kal-000001"])
        assert fs == 16000 and len(x) == pytest.approx(16000 / f, rel=0.01)
        assert int(d.utt2num_samples.values[f"sp{f:g}-kal-000001"]) == len(x)
        spec = np.abs(np.fft.rfft(x))
        peak = np.fft.rfftfreq(len(x), 1 / fs)[spec.argmax()]
        assert peak == pytest.approx(440 * f, rel=0.02)  # pitch scales with the speed
    # resumable: an existing wav is kept, a missing one re-rendered
    keep = out / "wav" / "sp0.9" / "kal-000002.wav"
    gone = out / "wav" / "sp1.1" / "slt-000003.wav"
    mtime = keep.stat().st_mtime_ns
    gone.unlink()
    SP.perturb(src, out, [0.9, 1.0, 1.1], nj=1)
    assert keep.stat().st_mtime_ns == mtime and gone.is_file()


@pytest.mark.parametrize("factors", [[], [0.9, 0.9], [0.2, 1.0]])
def test_bad_factors(src, tmp_path, factors):
    with pytest.raises(ValueError, match="expected distinct factors in"):
        SP.perturb(src, tmp_path / "o", factors)
