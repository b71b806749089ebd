"""``python -m espnet_omni.bin.search`` on a tiny supernet trained for one epoch."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import pytest
import torch
import yaml
from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

from espnet_omni.bin import search
from espnet_omni.sparsity.subnet import SubnetConfig
from espnet_omni.tasks import OmniASRTask
from espnet_omni.testing.tiny_asr import train_tiny_supernet

pytestmark = pytest.mark.filterwarnings("ignore:No valid stats found:UserWarning")
STATS, EXP = Path("exp/stats"), Path("exp/sn")
CONFIG, MODEL = EXP / "config.yaml", EXP / "valid.loss.best.pth"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("bin_search")
    train_tiny_supernet(root, STATS, EXP)
    return root


def _cmd(out: str, *budgets: str, unit: str = "fraction", config: Path = CONFIG,
         model: Path = MODEL, choices: tuple[str, ...] = ("0", "0.3", "0.6", "0.9")) -> list[str]:
    return ["--asr_train_config", str(config), "--asr_model_file", str(model),
            "--data_dir", "data/train", "--out_dir", out, "--budgets", *budgets,
            "--budget_unit", unit, "--metric", "loss", *(("--choices", *choices) if choices else ()),
            "--population", "4", "--generations", "2", "--seed", "0", "--max_utts", "6",
            "--no_progress"]


def _summary(out: Path) -> dict:
    return json.loads((out / "search.json").read_text())


def test_search_writes_subnets_within_budget_and_resumes(root, monkeypatch, capsys):
    monkeypatch.chdir(root)
    search.main(_cmd("exp/search", "0.95", "0.8"))
    out = root / "exp/search"
    first = _summary(out)
    assert json.loads(capsys.readouterr().out) == first
    assert first["budgets"] == [0.8, 0.95] and first["n_utts"] == 6
    assert first["n_evaluations"] > 0 and first["n_cached"] == first["n_evaluations"]
    assert first["seconds_per_evaluation"] > 0

    model, _ = OmniASRTask.build_model_from_file(CONFIG, MODEL, "cpu")
    enc = model.encoder
    enc.set_max_net()
    dense = enc.active_nonzero_params()
    assert first["dense_params"] == dense
    for res in first["results"]:
        path = out / res["file"]
        assert path.name == f"subnet_{res['budget']:g}.yaml"
        assert path.read_text().startswith("# Sub-network chosen")
        cfg = SubnetConfig.from_yaml(path)
        cfg.check_layers(enc.prunable_layers())
        enc.set_active_subnet(cfg)
        assert enc.active_nonzero_params() == res["nonzero_params"]
        assert enc.active_nonzero_params() / dense == res["cost"] <= res["budget"]
        assert set(cfg.sparsities.values()) <= {0.0, 0.3, 0.6, 0.9}
    with open(out / "front.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and list(rows[0])[2:] == enc.prunable_layers()  # per_layer dimensions
    costs = [float(r["cost"]) for r in rows]
    assert costs == sorted(costs)
    assert len(yaml.safe_load((out / "front.yaml").read_text())["front"]) == len(rows)

    search.main(_cmd("exp/search", "0.95", "0.8"))  # rerun: everything from the cache
    again = _summary(out)
    assert again["n_evaluations"] == 0 and again["n_cached"] == first["n_cached"]
    assert again["results"] == first["results"]


def test_bytes_budget(root, monkeypatch):
    monkeypatch.chdir(root)
    model, _ = OmniASRTask.build_model_from_file(CONFIG, MODEL, "cpu")
    model.encoder.set_max_net()
    budget = int(0.85 * model.encoder.active_size_bytes())
    search.main(_cmd("exp/search_bytes", str(budget), unit="bytes"))
    (res,) = _summary(root / "exp/search_bytes")["results"]
    model.encoder.set_active_subnet(SubnetConfig.from_yaml(root / "exp/search_bytes" / res["file"]))
    assert model.encoder.active_size_bytes() == res["cost"] <= budget


def test_impossible_budget_names_the_minimum(root, monkeypatch):
    monkeypatch.chdir(root)
    with pytest.raises(SystemExit, match=r"^error: budget 0\.01 \(fraction\) is impossible: the "
                                         r"minimum achievable is 0\.\d+"):
        search.main(_cmd("exp/search_bad", "0.9", "0.01"))
    assert not (root / "exp/search_bad").exists()


@pytest.mark.parametrize("budgets, unit, says", [
    (["1.5"], "fraction", r"^error: budgets \[1\.5\]: a fraction budget must be in \(0, 1\]"),
    (["20"], "ms", r"^error: a latency budget needs a structured supernet \(mask_granularity 'group'\)"),
])
def test_a_bad_budget_is_one_line(root, monkeypatch, budgets, unit, says):
    """A user's budget mistake: one line (SystemExit), not a traceback (issue 27 item 7)."""
    monkeypatch.chdir(root)
    with pytest.raises(SystemExit, match=says):
        search.main(_cmd("exp/search_badbudget", *budgets, unit=unit))


@pytest.mark.parametrize("text, says", [
    (None, r"nope.yaml: not found; expected a YAML file"),
    ("junk: [1\n", r"bad.yaml: not valid YAML at line 2"),
    ("encoders.0.self_attn.linear_q: 0.5\n", r"bad.yaml: unknown SubnetConfig keys .* \(expected a sub-network YAML"),
])
def test_a_wrong_subnet_yaml_is_one_line_naming_it(root, monkeypatch, tmp_path, text, says):
    """--subnet of bin/export and asr_inference_streaming: a missing, broken or wrong YAML."""
    from espnet_omni.bin import asr_inference_streaming, export

    monkeypatch.chdir(root)
    path = tmp_path / ("nope.yaml" if text is None else "bad.yaml")
    if text is not None:
        path.write_text(text)
    with pytest.raises(SystemExit, match="^error: --subnet .*" + says):
        export.main(["--asr_train_config", str(CONFIG), "--asr_model_file", str(MODEL), "--subnet", str(path),
                     "--format", "dense", "--out_dir", str(tmp_path / "export")])
    with pytest.raises(SystemExit, match="^error: .*" + says):
        asr_inference_streaming.main(["--asr_train_config", str(CONFIG), "--asr_model_file", str(MODEL),
                                      "--subnet", str(path), "--data_dir", "data/valid",
                                      "--output_dir", str(tmp_path / "dec")])


def test_stock_encoder_config_is_refused(root, monkeypatch):
    monkeypatch.chdir(root)
    args = yaml.safe_load(CONFIG.read_text())
    args["encoder"] = "conformer"
    stock_dir = Path("exp/stock")
    stock_dir.mkdir(exist_ok=True)
    with open(stock_dir / "config.yaml", "w") as f:
        yaml_no_alias_safe_dump(args, f)
    torch.save(OmniASRTask.build_model(argparse.Namespace(**args)).state_dict(),
               stock_dir / "model.pth")
    with pytest.raises(SystemExit, match=r"^error: exp/stock/config.yaml: the encoder is "
                                         r"ConformerEncoder, not a supernet"):
        search.main(_cmd("exp/search_stock", "0.5", config=stock_dir / "config.yaml",
                         model=stock_dir / "model.pth"))


def test_default_choices_are_the_supernets_training_choices(root, monkeypatch):
    """A supernet trained on sparsities 0.3-0.6 is searched there only: its other
    sub-networks hold weights its training never updated."""
    monkeypatch.chdir(root)
    args = yaml.safe_load(CONFIG.read_text())
    args["omni_conf"] = {**(args.get("omni_conf") or {}), "choices": [0.3, 0.6]}
    narrow = Path("exp/narrow")
    narrow.mkdir(exist_ok=True)
    with open(narrow / "config.yaml", "w") as f:
        yaml_no_alias_safe_dump(args, f)
    search.main(_cmd("exp/search_narrow", "0.8", config=narrow / "config.yaml", choices=()))
    out = root / "exp/search_narrow"
    (res,) = _summary(out)["results"]
    assert set(SubnetConfig.from_yaml(out / res["file"]).sparsities.values()) <= {0.3, 0.6}
    with open(out / "front.csv", newline="") as f:
        assert {float(v) for r in csv.DictReader(f) for k, v in r.items() if k not in ("cost", "score")} <= {0.3, 0.6}
