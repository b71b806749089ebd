"""A killed training keeps its records: compute.json counts each epoch once,
checkpoint.pth and compute.json are never left truncated, and an unreadable
one is a clear error (never a suggestion to load unsafely)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from espnet_omni.bin import asr_train
from espnet_omni.testing.tiny_asr import collect_stats_flags, train_flags, write_corpus
from espnet_omni.train.trainer import OmniTrainer

pytestmark = pytest.mark.filterwarnings("ignore:No valid stats found:UserWarning")
STATS = Path("exp/stats")


class Killed(BaseException):
    """Stands for SIGKILL: no ``except Exception`` on the way catches it."""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("records")
    write_corpus(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        asr_train.main(collect_stats_flags(STATS))
    return root


@pytest.fixture
def in_corpus(corpus, monkeypatch):
    monkeypatch.chdir(corpus)
    return corpus


def _train(out: str, epochs: int = 1) -> None:
    asr_train.main(train_flags(STATS, Path(out)) + ["--max_epoch", str(epochs), "--resume", "true"])


def _epochs(out: str) -> list:
    return sorted(torch.load(Path(out) / "checkpoint.pth", weights_only=True)["reporter"]["stats"])


def _compute(out: str) -> dict:
    return json.loads((Path(out) / "compute.json").read_text())


def test_kill_between_compute_record_and_checkpoint_counts_the_epoch_once(in_corpus, monkeypatch):
    """compute.json is written after training, before validation and the
    checkpoint: a kill there re-runs the epoch on resume, which must replace
    its record (4 epochs recorded for 3 otherwise)."""
    out = "exp/killed_in_validation"
    _train(out)
    with monkeypatch.context() as mp:
        def killed(*args, **kwargs):
            raise Killed

        mp.setattr(OmniTrainer, "validate_one_epoch", classmethod(killed))
        with pytest.raises(Killed):
            _train(out, 2)
    assert _epochs(out) == [1]
    _train(out, 2)
    assert _epochs(out) == [1, 2]
    compute = _compute(out)
    assert compute["epochs_counted"] == 2
    assert sorted(compute["per_epoch"]) == ["1", "2"]
    assert compute["train_cpu_seconds"] == pytest.approx(sum(v["cpu"] for v in compute["per_epoch"].values()))


def test_kill_while_writing_the_checkpoint_keeps_the_previous_one(in_corpus, monkeypatch):
    """ESPnet's first save of an epoch is checkpoint.pth; the kill leaves half
    of what was being written. The rerun resumes from epoch 1's checkpoint."""
    out = "exp/killed_in_save"
    _train(out)
    real_save = torch.save

    def killed_save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        if isinstance(f, (str, os.PathLike)):
            os.truncate(f, os.path.getsize(f) // 2)
        else:
            f.flush()
            f.truncate(f.tell() // 2)
        raise Killed

    with monkeypatch.context() as mp:
        mp.setattr(torch, "save", killed_save)
        with pytest.raises(Killed):
            _train(out, 2)
    assert _epochs(out) == [1]
    _train(out, 2)
    assert _epochs(out) == [1, 2] and _compute(out)["epochs_counted"] == 2
    assert not list(Path(out).glob(".*.tmp"))  # the rename took the temp file


def test_unreadable_checkpoint_is_a_clear_error_without_unsafe_advice(in_corpus):
    out = Path("exp/truncated_checkpoint")
    _train(str(out))
    ckpt = out / "checkpoint.pth"
    os.truncate(ckpt, ckpt.stat().st_size // 2)  # what a kill in an in-place write leaves
    with pytest.raises(RuntimeError) as e:
        _train(str(out), 2)
    msg = str(e.value)
    assert f"{ckpt}: unreadable" in msg and "1epoch.pth" in msg and "Move" in msg
    for unsafe in ("ESPNET_ALLOW_UNSAFE", "weights_only", "trust"):
        assert unsafe not in msg
    assert e.value.__cause__ is None and e.value.__suppress_context__  # no chained unsafe advice


def test_unreadable_compute_record_is_a_clear_error_before_training(in_corpus):
    out = Path("exp/truncated_compute")
    _train(str(out))
    path = out / "compute.json"
    path.write_text(path.read_text()[:20])
    with pytest.raises(ValueError, match=r"compute\.json: unreadable .*Move it aside"):
        _train(str(out), 2)
    assert _epochs(str(out)) == [1]
    path.unlink()
    _train(str(out), 2)
    assert _compute(str(out))["per_epoch"].keys() == {"2"}


def test_compute_record_is_keyed_by_epoch_and_carries_an_old_record_over(tmp_path):
    from espnet_omni.train.trainer import _add_compute

    (tmp_path / "compute.json").write_text(json.dumps(
        {"train_cpu_seconds": 30.0, "train_wall_seconds_epochs": 3.0, "epochs_counted": 3, "torch_threads": [2]}))
    _add_compute(tmp_path, 4, cpu=10.0, wall=1.0, k=1, passes=1)
    _add_compute(tmp_path, 4, cpu=12.0, wall=2.0, k=1, passes=1)  # epoch 4 again: replaces
    d = json.loads((tmp_path / "compute.json").read_text())
    assert (d["epochs_counted"], d["train_cpu_seconds"], d["train_wall_seconds_epochs"]) == (4, 42.0, 5.0)
    _add_compute(tmp_path, 5, cpu=1.0, wall=1.0, k=1, passes=1)
    _add_compute(tmp_path, 5, cpu=1.0, wall=1.0, k=1, passes=1)
    assert json.loads((tmp_path / "compute.json").read_text())["epochs_counted"] == 5
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    for epoch in (1, 2, 1):  # a training started again from epoch 1 drops the abandoned epoch 2
        _add_compute(fresh, epoch, cpu=1.0, wall=1.0, k=1, passes=1)
    d = json.loads((fresh / "compute.json").read_text())
    assert d["epochs_counted"] == 1 and "carried_over" not in d


def test_replace_atomically_leaves_the_old_file_on_a_kill(tmp_path):
    from espnet_omni.train.trainer import replace_atomically

    path = tmp_path / "compute.json"
    path.write_text('{"epochs_counted": 1}')

    def killed_write(f):
        f.write(b'{"epochs_cou')
        raise Killed

    with pytest.raises(Killed):
        replace_atomically(path, killed_write)
    assert json.loads(path.read_text()) == {"epochs_counted": 1}
    replace_atomically(path, lambda f: f.write(b'{"epochs_counted": 2}'))
    assert json.loads(path.read_text()) == {"epochs_counted": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["compute.json"]
