"""load_checkpoint / check_model_files: a broken or missing model file is a
ModelFileError naming it; a whole checkpoint loads as torch.load loads it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from espnet2.torch_utils.safe_torch_load import UnsafeLoadRefusedError

from espnet_omni.tasks.checkpoint import ModelFileError, check_model_files, load_checkpoint

STATE = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(3)}


def _save(path, legacy: bool = False):
    torch.save(STATE, path, _use_new_zipfile_serialization=not legacy)
    return path


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_a_whole_checkpoint_loads_as_torch_load_does(tmp_path, legacy):
    path = _save(tmp_path / "m.pth", legacy)
    got, ref = load_checkpoint(path, map_location="cpu"), torch.load(path, weights_only=True)
    assert got.keys() == ref.keys() and all(torch.equal(got[k], ref[k]) for k in ref)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("keep", [0.5, 0.0], ids=["half", "empty"])
def test_a_cut_checkpoint_names_the_file(tmp_path, legacy, keep):
    """Before: the half zip was ``OSError: [Errno 22] Invalid argument``, the half legacy
    file a bare EOFError, neither naming the file."""
    whole = _save(tmp_path / "m.pth", legacy).read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(whole[: int(len(whole) * keep)])
    with pytest.raises(ModelFileError, match=rf"^{cut}: truncated or not a PyTorch checkpoint"):
        load_checkpoint(cut, map_location="cpu")


def test_not_a_checkpoint_is_not_advised_to_load_unsafely(tmp_path):
    junk = tmp_path / "notes.pth"
    junk.write_text("not a model\n")
    with pytest.raises(ModelFileError, match=rf"^{junk}: truncated or not a PyTorch checkpoint") as e:
        load_checkpoint(junk)
    assert "unsafe" not in str(e.value) and "\n" not in str(e.value)


def test_a_whole_checkpoint_with_objects_keeps_espnets_refusal(tmp_path):
    path = tmp_path / "objs.pth"
    torch.save({"w": torch.zeros(1), "meta": Path("x")}, path)  # not weights-only loadable
    with pytest.raises(UnsafeLoadRefusedError):
        load_checkpoint(path)


def test_missing_files_are_named_before_any_model_is_built(tmp_path):
    config, model = tmp_path / "config.yaml", _save(tmp_path / "m.pth")
    with pytest.raises(ModelFileError, match=rf"^{config}: not found; expected the model's training config"):
        check_model_files(config, model)
    with pytest.raises(ModelFileError, match=rf"^{config}: not found"):
        check_model_files(None, model)  # ESPnet's default: config.yaml next to the model file
    config.write_text("encoder: conformer\n")
    check_model_files(config, model)
    check_model_files(config, None)
    with pytest.raises(ModelFileError, match=rf"^{tmp_path}: a directory; expected a model file"):
        check_model_files(config, tmp_path)
    with pytest.raises(ModelFileError, match=rf"^{tmp_path / 'x.pth'}: not found; expected a model file"):
        load_checkpoint(tmp_path / "x.pth")
