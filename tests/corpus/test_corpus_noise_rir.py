"""Offline noises and RIRs, their checks, and ESPnet's preprocessor using them."""

import numpy as np
import pytest
import soundfile as sf

from espnet_omni.corpus import noise_rir as NR


@pytest.fixture(scope="module")
def lists(tmp_path_factory):
    root = tmp_path_factory.mktemp("noise_rir")
    speech = root / "speech"
    speech.mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for i in range(8):
        p = speech / f"s{i}.wav"
        sf.write(p, 0.3 * rng.standard_normal(8000 + 1000 * i), 16000, subtype="PCM_16")
        lines.append(f"u-{i} {p}")
    (speech / "wav.scp").write_text("\n".join(lines) + "\n")
    NR.main(["--out", str(root / "out"), "--babble_from", str(speech / "wav.scp"), "--noises", "2", "--rirs", "3"])
    return root / "out"


def test_generates_every_kind_mono_16k(lists):
    noise = NR.check_scp(lists / "noise.scp", 16000)
    assert len(noise) == 2 * len(NR.NOISE_KINDS)
    assert {line.split()[0].split("_")[1] for line in noise} == set(NR.NOISE_KINDS)
    rirs = NR.check_scp(lists / "rir.scp", 16000)
    assert len(rirs) == 3
    for line in rirs:
        h, fs = sf.read(line.split()[1])
        assert fs == 16000 and np.argmax(np.abs(h)) == 0  # the direct path comes first and is largest
        assert 0.15 * 16000 < len(h) <= 16000


def test_same_seed_same_files(lists, tmp_path):
    speech_scp = lists.parent / "speech" / "wav.scp"
    NR.generate(tmp_path / "again", noises=2, rirs=3, babble_from=speech_scp)
    for name in ("noise_pink_01.wav", "noise_babble_00.wav", "rir_002.wav"):
        assert (tmp_path / "again" / "wav" / name).read_bytes() == (lists / "wav" / name).read_bytes()


def test_bad_lists_name_the_list_line_and_file(lists, tmp_path):
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, np.zeros((800, 2)), 16000)
    at8k = tmp_path / "8k.wav"
    sf.write(at8k, np.zeros(800), 8000)
    good = (lists / "noise.scp").read_text().splitlines()[0]
    cases = {
        "missing": (f"{good}\nn2 {tmp_path / 'gone.wav'}\n", r"missing\.scp:2: .*gone\.wav: file not found"),
        "rate": (f"n1 {at8k}\n", r"rate\.scp:1: .*8k\.wav: 8000 Hz, 1 channel\(s\); expected mono 16000 Hz"),
        "stereo": (f"n1 {stereo}\n", r"stereo\.scp:1: .*stereo\.wav: 16000 Hz, 2 channel\(s\)"),
        "format": ("just-one-field\n", r"format\.scp:1: expected '<id> <wav path>'"),
        "empty": ("\n", r"empty\.scp: empty list"),
    }
    for name, (text, says) in cases.items():
        (tmp_path / f"{name}.scp").write_text(text)
        with pytest.raises(NR.NoiseRirError, match=says):
            NR.check_scp(tmp_path / f"{name}.scp", 16000)
    with pytest.raises(NR.NoiseRirError, match="list not found"):
        NR.check_scp(tmp_path / "none.scp", 16000)


def test_non_utf8_list_names_its_line(tmp_path):
    """A Latin-1 path is an error naming the list and the line (blank lines counted)."""
    wav = tmp_path / "n.wav"
    sf.write(wav, np.zeros(800), 16000)
    (tmp_path / "latin.scp").write_bytes(f"n1 {wav}\n\n".encode() + b"n2 caf\xe9.wav\n")
    with pytest.raises(NR.NoiseRirError, match=r"latin\.scp:3: not UTF-8 .*expected UTF-8 text"):
        NR.check_scp(tmp_path / "latin.scp", 16000)


def _preprocessor(lists, **kw):
    from espnet2.train.preprocessor import CommonPreprocessor

    return CommonPreprocessor(train=True, token_type="char", token_list=["<blank>", "<unk>", "a", " ", "<sos/eos>"],
                              **kw)


def test_augmentation_on_changes_the_audio_and_off_reproduces_it(lists):
    """ESPnet's preprocessor with our lists: on (p=1) every utterance changes; off it is untouched."""
    rng = np.random.default_rng(1)
    x = (0.1 * rng.standard_normal(16000)).astype(np.float64)
    on = _preprocessor(lists, noise_scp=str(lists / "noise.scp"), rir_scp=str(lists / "rir.scp"),
                       noise_apply_prob=1.0, rir_apply_prob=1.0, noise_db_range="5_20")
    off = _preprocessor(lists)
    np.random.seed(0)
    y_on = on("u-1", {"speech": x.copy(), "text": "a a"})["speech"].reshape(-1)  # ESPnet returns (T, 1)
    y_off = off("u-1", {"speech": x.copy(), "text": "a a"})["speech"]
    assert y_on.shape == x.shape and not np.allclose(y_on, x, atol=1e-3)
    np.testing.assert_array_equal(y_off, x)
    # the same lists at probability 0: untouched too
    zero = _preprocessor(lists, noise_scp=str(lists / "noise.scp"), rir_scp=str(lists / "rir.scp"),
                         noise_apply_prob=0.0, rir_apply_prob=0.0)
    np.testing.assert_allclose(zero("u-1", {"speech": x.copy(), "text": "a"})["speech"].reshape(-1), x)


def test_training_refuses_a_wrong_rate_noise_list(lists, tmp_path):
    """OmniASRTask checks --noise_scp/--rir_scp before ESPnet reads them lazily mid-epoch."""
    from espnet_omni.tasks import OmniASRTask

    at8k = tmp_path / "8k.wav"
    sf.write(at8k, np.zeros(800), 8000)
    (tmp_path / "bad.scp").write_text(f"n1 {at8k}\n")
    (tmp_path / "tokens.txt").write_text("<blank>\n<unk>\na\n<sos/eos>\n")
    base = ["--token_list", str(tmp_path / "tokens.txt"), "--token_type", "char", "--use_preprocessor", "true",
            "--output_dir", str(tmp_path / "exp"), "--rir_scp", str(lists / "rir.scp")]
    args = OmniASRTask.get_parser().parse_args(base + ["--noise_scp", str(tmp_path / "bad.scp")])
    with pytest.raises(NR.NoiseRirError, match=r"bad\.scp:1: .*8000 Hz"):
        OmniASRTask.build_preprocess_fn(args, train=True)
    args = OmniASRTask.get_parser().parse_args(base + ["--noise_scp", str(lists / "noise.scp")])
    assert OmniASRTask.build_preprocess_fn(args, train=True) is not None
