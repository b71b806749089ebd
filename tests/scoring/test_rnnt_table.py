"""local/rnnt_table.py: the training-time comparison behind the RNN-T wall-time target."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("rnnt_table", ROOT / "local" / "rnnt_table.py")
rnnt_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rnnt_table)


def _model(walls):
    per = {str(i + 1): {"wall": w, "cpu": 2 * w} for i, w in enumerate(walls)}
    return {"compute": {"per_epoch": per, "train_wall_seconds_epochs": sum(walls), "epochs_counted": len(walls)}}


def test_wall_per_epoch_is_the_median_epoch():
    # two epochs slowed 3x by another job on the machine do not move it; the mean would (+50%)
    assert rnnt_table.wall_per_epoch(_model([100, 102, 98, 300, 310, 101])) == 101.5


def test_wall_per_epoch_without_per_epoch_times_is_the_mean():
    m = {"compute": {"train_wall_seconds_epochs": 300.0, "epochs_counted": 3}}
    assert rnnt_table.wall_per_epoch(m) == 100.0
