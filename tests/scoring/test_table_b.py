"""local/table_b.py and espnet_omni.scoring.ssl_summary: the wav2vec 2.0 pretraining summary and the
training compute, from made-up logs."""

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("table_b", ROOT / "local" / "table_b.py")
table_b = importlib.util.module_from_spec(spec)
spec.loader.exec_module(table_b)
from espnet_omni.scoring import ssl_summary  # noqa: E402


def _epoch(n, tr_acc, va_acc, tr_ppl, va_ppl):
    return (f"[vm] 2026-11-22 10:00:00,000 (trainer:392) INFO: {n}epoch results: [train] iter_time=0.001, "
            f"w2v_contrastive=2.9, w2v_acc={tr_acc}, w2v_code_ppl={tr_ppl}, loss=2.9, time=2 minutes, "
            f"total_count=100, [valid] w2v_contrastive=2.8, w2v_acc={va_acc}, w2v_code_ppl={va_ppl}, loss=2.8, "
            "time=3.1 seconds, total_count=20\n")


def _ssl_exp(tmp_path, name, ngpu):
    d = tmp_path / name
    d.mkdir()
    (d / "config.yaml").write_text(yaml.safe_dump({
        "ngpu": ngpu,
        "loss": [{"name": "wav2vec2", "conf": {"num_negatives": 20, "codebook_groups": 2, "codebook_entries": 64}}]}))
    (d / "compute.json").write_text(json.dumps({"train_cpu_seconds": 1234.4, "train_wall_seconds_epochs": 56.6}))
    (d / "train.log").write_text("some line\n" + _epoch(1, 0.06, 0.08, 40.5, 41.0) + _epoch(2, 0.25, 0.31, 22.0, 19.5))
    return d


def test_pretraining_summary_reads_train_and_valid(tmp_path):
    cpu, gpu = _ssl_exp(tmp_path, "ssl_cpu", 0), _ssl_exp(tmp_path, "ssl_gpu", 1)
    out = tmp_path / "RESULTS.md"
    ssl_summary.main([str(cpu), str(gpu), "--results_file", str(out), "--command", "./run.sh x"])
    text = out.read_text()
    assert "<!-- BEGIN ssl_pretraining -->" in text and "`./run.sh x`" in text
    row = "| 2 | 0.060 -> 0.250 | 0.080 -> 0.310 | 0.048 | 40.5 -> 22.0 | 41.0 -> 19.5 (range 2..128) |"
    assert f"| `ssl_cpu` | dense full-context {row} 1234 CPU-s |" in text
    assert f"| `ssl_gpu` | dense full-context {row} 57 GPU-s (1 GPU) |" in text


def test_bad_invocations(tmp_path):
    d = _ssl_exp(tmp_path, "ssl", 0)
    with pytest.raises(SystemExit, match="ssl_summary: missing .*config.yaml"):
        ssl_summary.main([str(tmp_path / "nowhere"), "--results_file", str(tmp_path / "R.md")])
    with pytest.raises(SystemExit, match="required"):
        table_b.main(["--rows", "1", "--results_file", str(tmp_path / "R.md")])
    (d / "train.log").write_text("no epochs yet\n")
    with pytest.raises(SystemExit, match="no epoch results"):
        ssl_summary.main([str(d), "--results_file", str(tmp_path / "R.md")])


def test_provenance_names_config_gpus_and_torch(tmp_path):
    d = _ssl_exp(tmp_path, "asr_x", 1)
    (d / "train.log").write_text(
        "/usr/bin/python3 espnet_omni/bin/asr_train.py --config conf/train_asr_dual.yaml --ngpu 1\n"
        "[vm] 2026 (abs_task:1487) INFO: pytorch.version=2.11.0+cu130, cuda.available=True, cudnn.version=1\n")
    assert table_b.provenance(d) == ("`asr_x`: config `conf/train_asr_dual.yaml`, ngpu 1, "
                                     "PyTorch 2.11.0+cu130 (CUDA available: True)")


def test_sections_from_absolute_paths_name_none(tmp_path, monkeypatch):
    """The command line as typed (``--dir /abs/checkout``), a config path from train.log and --note
    are written relative to the checkout (issue 15); --note goes right under the heading."""
    root = tmp_path / "main"
    monkeypatch.setattr(table_b.tables, "ROOT", root, raising=False)
    d = _ssl_exp(tmp_path, "ssl_w2v", 0)
    out = root / "RESULTS.md"
    root.mkdir()
    ssl_summary.main([str(d), "--results_file", str(out), "--command",
                  f"./run.sh --dir {root} --stage 14 --results_file {out}",
                  "--note", f"Provenance: in {tmp_path}/gpu."])
    text = out.read_text()
    assert str(tmp_path) not in text
    assert ("### wav2vec 2.0 pretraining\n\nProvenance: in ../gpu.\n\nWritten by `python -m "
            "espnet_omni.scoring.ssl_summary` from the pretraining logs; command: `./run.sh --dir . --stage 14 --results_file RESULTS.md`.") in text
    (d / "train.log").write_text(f"python asr_train.py --config {root}/conf/train_asr_dual.yaml --ngpu 0\n")
    assert table_b.provenance(d) == "`ssl_w2v`: config `conf/train_asr_dual.yaml`, ngpu 0"
