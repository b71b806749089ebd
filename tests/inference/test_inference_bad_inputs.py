"""Bad input given straight to the decoders, as a new user would: an empty or a
half-copied wav, a half-copied or missing model file, an exported sub-network
to stream. Each is one line naming the file (exit code 1, no traceback), or,
for audio with ``--on_error drop``, dropped and counted."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile

from espnet_omni.bin import asr_inference, asr_inference_streaming, export, export_onnx, subnet_yaml
from espnet_omni.corpus.datadir import read_kv
from espnet_omni.testing.tiny_asr import VALID

CONFIG, MODEL = "exp/supernet/config.yaml", "exp/supernet/valid.loss.best.pth"
GOOD = VALID.parent / "wav/valid_utt0.wav"
SAYS = {"empty": "has no samples; expected speech", "cut": "is truncated: its data chunk declares"}


@pytest.fixture
def bad_wavs(in_root, tmp_path) -> dict:
    """``{"empty": a 0-sample wav, "cut": the first half of a valid wav's bytes}``."""
    empty, cut = tmp_path / "empty.wav", tmp_path / "cut.wav"
    soundfile.write(empty, np.zeros(0, np.float32), 16000, subtype="PCM_16")
    whole = (in_root / GOOD).read_bytes()
    cut.write_bytes(whole[: len(whole) // 2])
    return {"empty": empty, "cut": cut}


def _data_dir(root: Path, wavs: dict) -> Path:
    """A Kaldi data dir: the good utterance, then ``wavs`` (utt -> file)."""
    d = root / f"data_{'_'.join(wavs)}"
    d.mkdir()
    lines = [f"valid_utt0 {GOOD.resolve()}\n"] + [f"{utt} {path}\n" for utt, path in wavs.items()]
    (d / "wav.scp").write_text("".join(lines))
    return d


def _stream(data_dir: Path, out: Path, *extra: str, config: str = CONFIG, model: str = MODEL) -> None:
    asr_inference_streaming.main(["--asr_train_config", config, "--asr_model_file", model, "--data_dir",
                                  str(data_dir), "--output_dir", str(out), "--chunk_size", "4", *extra])


def _decode(data_dir: Path, out: Path, config: str = CONFIG, model: str = MODEL) -> None:
    asr_inference.main(["--ngpu", "0", "--batch_size", "1", "--ctc_weight", "1.0", "--beam_size", "1",
                        "--lm_weight", "0.0", "--data_path_and_name_and_type",
                        f"{data_dir / 'wav.scp'},speech,sound", "--asr_train_config", config,
                        "--asr_model_file", model, "--output_dir", str(out)])


def _export_onnx(_data_dir: Path, out: Path, config: str = CONFIG, model: str = MODEL) -> None:
    export_onnx.main(["--asr_train_config", config, "--asr_model_file", model, "--out_dir", str(out)])


def _one_error_line(capsys, run, *args, **kwargs) -> str:
    """The one ``error:`` line ``run`` prints to stderr before exiting with code 1."""
    with pytest.raises(SystemExit) as e:
        run(*args, **kwargs)
    err = capsys.readouterr().err
    if isinstance(e.value.code, str):  # sys.exit("error: ...") prints the message itself
        err += e.value.code + "\n"
    else:
        assert e.value.code == 1
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("run", [_stream, _decode], ids=["streaming", "asr_inference"])
@pytest.mark.parametrize("kind", ["empty", "cut"])
def test_bad_wav_is_refused_naming_the_utterance_and_file(bad_wavs, tmp_path, capsys, run, kind):
    """Before: the empty wav decoded to "" (streaming) or failed in the STFT (asr_inference),
    the half wav was decoded from the half present."""
    d = _data_dir(tmp_path, {kind: bad_wavs[kind]})
    line = _one_error_line(capsys, run, d, tmp_path / "out")
    assert f"utterance {kind!r} in {d / 'wav.scp'}: {bad_wavs[kind]} {SAYS[kind]}" in line, line


def test_streaming_drop_skips_and_counts_them(bad_wavs, tmp_path):
    d, out = _data_dir(tmp_path, bad_wavs), tmp_path / "out"
    _stream(d, out, "--on_error", "drop")
    assert list(read_kv(out / "text")) == ["valid_utt0"]
    lat = json.loads((out / "latency.json").read_text())
    assert lat["num_utterances"] == 1 and lat["num_dropped"] == 2
    for kind, says in SAYS.items():
        assert f"{bad_wavs[kind]} {says}" in lat["dropped"][kind]


@pytest.mark.parametrize("run", [_stream, _decode, _export_onnx], ids=["streaming", "asr_inference", "export_onnx"])
@pytest.mark.parametrize("broken", ["cut_model", "no_model", "no_config"])
def test_broken_model_files_are_one_line_naming_the_file(in_root, tmp_path, capsys, run, broken):
    """Before: a half .pth was ``OSError: [Errno 22] Invalid argument`` naming no file, a missing
    file a FileNotFoundError traceback."""
    d = _data_dir(tmp_path, {})
    config, model = CONFIG, MODEL
    if broken == "cut_model":
        whole = Path(MODEL).read_bytes()
        model = str(tmp_path / "cut.pth")
        Path(model).write_bytes(whole[: len(whole) // 2])
        says = f"error: {model}: truncated or not a PyTorch checkpoint"
    elif broken == "no_model":
        model = str(tmp_path / "none.pth")
        says = f"error: {model}: not found; expected a model file (.pth)"
    else:
        config = str(tmp_path / "none.yaml")
        says = f"error: {config}: not found; expected the model's training config (config.yaml)"
    line = _one_error_line(capsys, run, d, tmp_path / "out", config=config, model=model)
    assert line.startswith(says), line


def test_streaming_an_exported_subnetwork_says_how_and_that_works(in_root, tmp_path, capsys):
    """A pruned export (encoder omni_conformer_pruned) does not stream in PyTorch: the error gives
    the dense copy in the supernet's config (run.sh stage 10); that command streams."""
    subnet, pruned = tmp_path / "subnet.yaml", tmp_path / "pareto/s50"
    subnet_yaml.main(["--asr_train_config", CONFIG, "--sparsity", "0.5", "--out", str(subnet)])
    export.main(["--asr_train_config", CONFIG, "--asr_model_file", MODEL, "--subnet", str(subnet),
                 "--format", "sparse", "--out_dir", str(pruned), "--dense_copy", str(pruned / "dense")])
    capsys.readouterr()
    d = _data_dir(tmp_path, {})
    line = _one_error_line(capsys, _stream, d, tmp_path / "out", config=str(pruned / "config.yaml"),
                           model=str(pruned / "model.pth"))
    assert "--onnx_dir" in line, line
    how = re.search(r"--asr_train_config (\S+) --asr_model_file (\S+)", line)
    assert how and how.groups() == (CONFIG, str(pruned / "dense/model.pth")), line
    _stream(d, tmp_path / "dense_out", config=how[1], model=how[2])
    assert list(read_kv(tmp_path / "dense_out/text")) == ["valid_utt0"]


def test_a_copy_elsewhere_gets_placeholders(in_root, tmp_path, capsys):
    """No supernet dir at the config's output_dir, no dense copy: the message says what to give."""
    conf = Path(CONFIG).read_text().replace("encoder: omni_conformer\n", "encoder: omni_conformer_pruned\n")
    (tmp_path / "config.yaml").write_text(conf.replace("output_dir: exp/supernet", "output_dir: gone"))
    shutil.copy(MODEL, tmp_path / "model.pth")
    line = _one_error_line(capsys, _stream, _data_dir(tmp_path, {}), tmp_path / "out",
                           config=str(tmp_path / "config.yaml"), model=str(tmp_path / "model.pth"))
    assert "--asr_train_config <supernet dir>/config.yaml --asr_model_file <export dir>/dense/model.pth" in line
