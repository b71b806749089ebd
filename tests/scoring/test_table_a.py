"""local/table_a.py: the section written from made-up experiment directories names no machine path."""

import importlib.util
import json
import re
from pathlib import Path

import yaml

from espnet_omni.scoring import tables

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("table_a", ROOT / "local" / "table_a.py")
table_a = importlib.util.module_from_spec(spec)
spec.loader.exec_module(table_a)

DECODE = "decode_x"
# an absolute path in markdown text: after a space, backtick, `=` or `(`, a `/` and a name
ABSOLUTE = re.compile(r"(?:^|[\s`=(])/[\w.]")


def _exp(d: Path, wer: float, cpu: float = 100.0) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "compute.json").write_text(json.dumps({"train_cpu_seconds": cpu, "epochs_counted": 2, "subnets_per_step": 1,
                                                "train_wall_seconds_epochs": cpu / 2}))
    (d / "train.log").write_text("".join(f"x {n}epoch results: [train] loss=1.0, time=1 minute and 2 seconds, "
                                         "total_count=9, [valid] loss=1.0\n" for n in (1, 2)))
    _scores(d / DECODE, wer)
    return d


def _scores(d: Path, wer: float) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "scores.json").write_text(json.dumps({"scores": {"test": {"words": {"wer": wer}}}}))


def _export(d: Path, nonzero: int, wer: float, calib_dir: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "export.json").write_text(json.dumps({"nonzero_params": nonzero, "model_bytes": 4 * nonzero,
                                               "bn_calibration": {"utts": 20, "data_dir": str(calib_dir)}}))
    _scores(d / DECODE, wer)


def _recipe(root: Path) -> dict:
    """A checkout at ``root`` with Table A's outputs: dense, one supernet, one pruned model at 0.5."""
    exp = root / "exp"
    train = root / "dump" / "raw" / "train"
    dense = _exp(exp / "asr_ctc", 0.5)
    omni = _exp(exp / "asr_ctc_omni", 0.6, cpu=300.0)
    (omni / "compute.json").write_text(json.dumps({"train_cpu_seconds": 300.0, "epochs_counted": 2,
                                                   "subnets_per_step": 3, "train_wall_seconds_epochs": 150.0}))
    (omni / "config.yaml").write_text(yaml.safe_dump({"max_epoch": 2, "omni_conf": {"choices": [0.5, 0.9]}}))
    _export(omni / "export_0.5", 900, 0.55, train)
    prune = _exp(exp / "asr_ctc_prune0.5", 0.6)
    _export(prune / "export", 1000, 0.6, train)
    return {"dense": dense, "omni": omni, "prune": prune}


def test_section_from_absolute_paths_names_none(tmp_path, monkeypatch):
    """run.sh hands table_a.py absolute experiment directories and its own command line as typed
    (``--dir /abs/checkout``): the section says them relative to the checkout (issue 15)."""
    root, gpu = tmp_path / "main", tmp_path / "gpu"
    monkeypatch.setattr(tables, "ROOT", root, raising=False)
    d = _recipe(root)
    also = _exp(gpu / "exp" / "asr_ctc_omni.v2", 0.7)
    (also / "config.yaml").write_text((d["omni"] / "config.yaml").read_text())
    _export(also / "export_0.5", 900, 0.65, gpu / "dump" / "raw" / "train")
    results = root / "RESULTS.md"
    command = (f"./run.sh --dir {root} --stage 11 --table_a_also v2={also}\\ v1={root}/exp/x "
               f"--results_file {results}")
    table_a.main(["--dense", str(d["dense"]), "--omni", str(d["omni"]), "--prune", str(d["prune"]),
                  "--targets", "0.5", "--decode", DECODE, "--sets", "test", "--results_file", str(results),
                  "--plot", str(tmp_path / "a.png"), "--command", command, "--also", f"v2={also}",
                  "--note", f"Provenance: trained in {gpu} on a GPU."])
    text = results.read_text()
    assert str(tmp_path) not in text and not ABSOLUTE.findall(text), ABSOLUTE.findall(text)
    assert ("command: `./run.sh --dir . --stage 11 --table_a_also v2=../gpu/exp/asr_ctc_omni.v2\\ v1=exp/x "
            "--results_file RESULTS.md`") in text
    assert "Supernet (`exp/asr_ctc_omni`): 2 epochs" in text and "Supernet v2 (`../gpu/exp/asr_ctc_omni.v2`)" in text
    assert "on 20 utts of `dump/raw/train`" in text and "on 20 utts of `../gpu/dump/raw/train`" in text
    # --note: right under the heading, paths relative too
    assert "### Table A: omni-sparsity supernet vs individually pruned models\n\n" \
           "Provenance: trained in ../gpu on a GPU.\n\nWritten by `local/table_a.py`" in text
    assert "| 0.5 | (b) omni sub-network | 900 | 3,600 | 55.0 |" in text


def test_no_note_no_empty_paragraph(tmp_path):
    d = _recipe(tmp_path)
    results = tmp_path / "RESULTS.md"
    table_a.main(["--dense", str(d["dense"]), "--omni", str(d["omni"]), "--prune", str(d["prune"]),
                  "--targets", "0.5", "--decode", DECODE, "--sets", "test", "--results_file", str(results),
                  "--plot", str(tmp_path / "a.png"), "--command", "./run.sh"])
    assert "pruned models\n\nWritten by `local/table_a.py` from the recipe's outputs; command: `./run.sh`." \
        in results.read_text()
