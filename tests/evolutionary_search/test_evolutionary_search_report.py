"""report: front CSV/YAML and budget labels."""

import csv

import pytest
import yaml

from espnet_omni.evolutionary_search import ParetoPoint
from espnet_omni.evolutionary_search.report import budget_label, write_front_csv, write_front_yaml

FRONT = [ParetoPoint(1.5, 0.3, (0.9, 0.1)), ParetoPoint(2.0, 1 / 3, (0.5, 0.0))]


def test_front_csv_round_trip(tmp_path):
    path = write_front_csv(FRONT, tmp_path / "out" / "front.csv", names=["enc.0", "enc.1"])
    assert path.read_text().splitlines()[0] == "cost,score,enc.0,enc.1"
    with open(path, newline="") as f:
        rows = list(csv.reader(f))[1:]
    assert [ParetoPoint(float(r[0]), float(r[1]), tuple(map(float, r[2:]))) for r in rows] == FRONT


def test_front_csv_bad_names(tmp_path):
    with pytest.raises(ValueError, match="2 dimensions"):
        write_front_csv(FRONT, tmp_path / "f.csv", names=["a"])
    with pytest.raises(ValueError, match="distinct"):
        write_front_csv(FRONT, tmp_path / "f.csv", names=["cost", "b"])
    with pytest.raises(ValueError, match="different lengths"):
        write_front_csv([*FRONT, (3.0, 0.1, (0.0,))], tmp_path / "f.csv")


def test_front_yaml(tmp_path):
    data = yaml.safe_load(write_front_yaml(FRONT, tmp_path / "front.yaml").read_text())
    assert data == {
        "front": [
            {"cost": 1.5, "score": 0.3, "sparsities": [0.9, 0.1]},
            {"cost": 2.0, "score": 1 / 3, "sparsities": [0.5, 0.0]},
        ]
    }


def test_budget_label():
    assert budget_label(3) == "3" and budget_label(2.5e6) == "2500000"
    assert budget_label(0.25) == "0.25"
