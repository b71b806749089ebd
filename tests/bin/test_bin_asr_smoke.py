"""End-to-end smoke: collect stats, train 1 epoch, decode, pack, decode unpacked.

A tiny CTC-only conformer (ESPnet's ``conformer``, then our ``omni_conformer``)
on 8 synthetic utterances, all through espnet_omni.bin entries, in-process.
About 2 s per encoder on one CPU core, after ~15 s of importing ESPnet.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest
import yaml
from espnet2.main_funcs.pack_funcs import unpack

from espnet_omni.testing.tiny_asr import (
    N_VALID,
    collect_stats_flags,
    decode_flags,
    train_flags,
    write_corpus,
)
from espnet_omni.bin import asr_inference, asr_train, pack
from espnet_omni.tasks import ASR_CHOICES

STATS, EXP = Path("exp/stats"), Path("exp/asr")
# ESPnet quirk: a CTC-only model reports acc/cer/wer as None in validation,
# and the reporter warns when averaging them; expected, not a failure.
pytestmark = pytest.mark.filterwarnings("ignore:No valid stats found:UserWarning")


@pytest.fixture(scope="module", params=["conformer", "omni_conformer"])
def trained(request, tmp_path_factory):
    """Corpus root after collect_stats + 1 training epoch (paths relative to it).

    Runs once with ESPnet's ``conformer`` and once with our ``omni_conformer``
    (skipped while that encoder is not registered).
    """
    encoder = request.param
    if encoder not in ASR_CHOICES.choices("encoder").classes:
        pytest.skip(f"--encoder {encoder} not registered: {ASR_CHOICES.skipped}")
    root = tmp_path_factory.mktemp(f"smoke_{encoder}")
    write_corpus(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        asr_train.main(collect_stats_flags(STATS, encoder))
        asr_train.main(train_flags(STATS, EXP, encoder))
    config = yaml.safe_load((root / EXP / "config.yaml").read_text())
    assert config["encoder"] == encoder
    return root


def _assert_one_line_per_valid_utt(text_file: Path) -> None:
    lines = text_file.read_text().splitlines()
    keys = [line.split(maxsplit=1)[0] for line in lines]
    assert keys == [f"valid_utt{i}" for i in range(N_VALID)]


def test_help_lists_our_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        asr_train.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--omni_conf" in out and "--encoder" in out


def test_collect_stats_and_train_outputs(trained):
    for split in ("train", "valid"):
        for name in ("speech_shape", "text_shape", "feats_stats.npz"):
            assert (trained / STATS / split / name).is_file()
    config = yaml.safe_load((trained / EXP / "config.yaml").read_text())
    assert config["omni_conf"] == {}
    assert config["model_conf"]["ctc_weight"] == 1.0
    assert (trained / EXP / "valid.loss.best.pth").is_file()


def test_decode_writes_one_line_per_utterance(trained, monkeypatch):
    monkeypatch.chdir(trained)
    asr_inference.main(
        decode_flags(EXP / "config.yaml", EXP / "valid.loss.best.pth", Path("decode"))
    )
    _assert_one_line_per_valid_utt(trained / "decode/1best_recog/text")


def test_pack_then_decode_from_unpacked_files(trained, monkeypatch):
    monkeypatch.chdir(trained)
    archive = Path("packed/asr.zip")
    pack.main(
        [
            "asr", "--outpath", str(archive),
            "--asr_train_config", str(EXP / "config.yaml"),
            "--asr_model_file", str(EXP / "valid.loss.best.pth"),
            "--option", str(STATS / "train/feats_stats.npz"),
        ]
    )
    with zipfile.ZipFile(archive) as z:
        assert "meta.yaml" in z.namelist()
    files = unpack(archive, "unpacked")
    # The unpacked config must point at the unpacked stats, not the originals.
    config = yaml.safe_load(Path(files["asr_train_config"]).read_text())
    stats_file = config["normalize_conf"]["stats_file"]
    assert stats_file == "unpacked/exp/stats/train/feats_stats.npz"
    shutil.move("exp", "exp_moved_away")  # decoding must not need the originals
    try:
        asr_inference.main(
            decode_flags(
                Path(files["asr_train_config"]),
                Path(files["asr_model_file"]),
                Path("decode_unpacked"),
            )
        )
    finally:
        shutil.move("exp_moved_away", "exp")
    _assert_one_line_per_valid_utt(trained / "decode_unpacked/1best_recog/text")


def test_several_sets_in_one_process_equal_one_at_a_time(trained, monkeypatch):
    """--set decodes each set exactly as its own run would (a key file too)."""
    monkeypatch.chdir(trained)
    base = decode_flags(EXP / "config.yaml", EXP / "valid.loss.best.pth", Path("unused"))
    i = base.index("--data_path_and_name_and_type")
    scp = base[i + 1].split(",")[0]
    common = base[:i] + base[i + 2:]
    j = common.index("--output_dir")
    common = common[:j] + common[j + 2:]
    keys = Path("keys.half")
    lines = Path(scp).read_text().splitlines()
    keys.write_text("".join(line.split()[0] + "\n" for line in lines[::2]))
    for name, key in (("one_all", None), ("one_half", keys)):
        asr_inference.main(common + ["--data_path_and_name_and_type", f"{scp},speech,sound",
                                     "--output_dir", name] + (["--key_file", str(key)] if key else []))
    asr_inference.main(common + ["--set", scp, "-", "many_all", "--set", scp, str(keys), "many_half"])
    for part in ("all", "half"):
        one = (trained / f"one_{part}/1best_recog/text").read_text()
        assert one and (trained / f"many_{part}/1best_recog/text").read_text() == one
    assert len((trained / "many_half/1best_recog/text").read_text().splitlines()) == len(lines[::2])
    with pytest.raises(SystemExit, match="drop --output_dir"):
        asr_inference.main(common + ["--output_dir", "x", "--set", scp, "-", "y"])
