"""A tiny omni_conformer supernet trained for one epoch, shared by tests/inference and tests/search."""

from __future__ import annotations

from pathlib import Path

import pytest

from espnet_omni.tasks import OmniASRTask
from espnet_omni.testing.tiny_asr import train_tiny_supernet

STATS, EXP = Path("exp/stats"), Path("exp/supernet")


@pytest.fixture(scope="session")
def supernet_root(tmp_path_factory) -> Path:
    """Corpus root holding ``exp/supernet/{config.yaml,valid.loss.best.pth}``
    (paths in wav.scp and the config are relative to it)."""
    root = tmp_path_factory.mktemp("inference_supernet")
    train_tiny_supernet(root, STATS, EXP)
    return root


@pytest.fixture
def in_root(supernet_root, monkeypatch) -> Path:
    """Run the test with the corpus root as working directory."""
    monkeypatch.chdir(supernet_root)
    return supernet_root


@pytest.fixture
def model_and_args(in_root):
    """A fresh copy of the trained model (eval mode) and its training args."""
    model, args = OmniASRTask.build_model_from_file(
        EXP / "config.yaml", EXP / "valid.loss.best.pth", "cpu")
    return model.eval(), args
