"""report: front CSV/YAML and per-budget YAML files."""

import pytest
import yaml

from espnet_omni.evolutionary_search import ParetoPoint
from espnet_omni.evolutionary_search.report import (
    budget_label,
    read_budget_yaml,
    read_front_csv,
    write_budget_yaml,
    write_budget_yamls,
    write_front_csv,
    write_front_yaml,
)

FRONT = [ParetoPoint(1.5, 0.3, (0.9, 0.1)), ParetoPoint(2.0, 1 / 3, (0.5, 0.0))]


def test_front_csv_round_trip(tmp_path):
    path = write_front_csv(FRONT, tmp_path / "out" / "front.csv", names=["enc.0", "enc.1"])
    assert path.read_text().splitlines()[0] == "cost,score,enc.0,enc.1"
    assert read_front_csv(path) == FRONT


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


def test_budget_yamls_round_trip(tmp_path):
    paths = write_budget_yamls({2e6: (1.5e6, 0.2, (0.5, 0.25)), 0.5: (0.4, 0.9, (0.9, 0.9))},
                               tmp_path)
    assert paths[2e6].name == "budget_2000000.yaml" and paths[0.5].name == "budget_0.5.yaml"
    rec = read_budget_yaml(paths[2e6])
    assert rec == {"budget": 2e6, "cost": 1.5e6, "score": 0.2, "sparsities": [0.5, 0.25]}
    assert list(yaml.safe_load(paths[2e6].read_text())) == ["budget", "cost", "score", "sparsities"]


def test_budget_yaml_rejects_over_budget_and_bad_files(tmp_path):
    with pytest.raises(ValueError, match="exceeds its budget"):
        write_budget_yaml(1.0, (2.0, 0.1, (0.0,)), tmp_path / "b.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("budget: 1\ncost: 1\nscore: 0.1\nsparsity: [0.1]\n")
    with pytest.raises(ValueError, match="exactly the keys"):
        read_budget_yaml(bad)
    bad.write_text("budget: 1\ncost: 1\nscore: 0.1\nsparsities: [1.5]\n")
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        read_budget_yaml(bad)
    bad.write_text("budget: one\ncost: 1\nscore: 0.1\nsparsities: [0.5]\n")
    with pytest.raises(ValueError, match="'budget' must be a number"):
        read_budget_yaml(bad)


def test_budget_label():
    assert budget_label(3) == "3" and budget_label(2.5e6) == "2500000"
    assert budget_label(0.25) == "0.25"
