"""The recipe end to end on the tiny corpus, and its option handling."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["./run.sh", *args], cwd=ROOT, capture_output=True, text=True, check=check, timeout=900)


def test_help_lists_every_stage_and_option():
    out = run_sh("--help").stdout
    for n in range(1, 8):
        assert re.search(rf"^ +{n} ", out, re.M), f"stage {n} missing from --help"
    assert "asr_config" in out and "stop_stage" in out


def test_unknown_option_lists_the_valid_ones():
    r = run_sh("--stgae", "3", check=False)
    assert r.returncode == 2
    assert "unknown option '--stgae'" in r.stderr and "--stage" in r.stderr and "--asr_config" in r.stderr


def test_bad_choice_values_are_refused():
    r = run_sh("--token_type", "phone", check=False)
    assert r.returncode == 2 and "--token_type must be char or bpe" in r.stderr


def test_tiny_recipe_end_to_end_then_skips_finished_stages(tmp_path):
    args = ["--dir", str(tmp_path), "--size", "tiny", "--asr_config", "conf/train_asr_tiny.yaml"]
    r = run_sh(*args)
    results = (tmp_path / "RESULTS.md").read_text()
    assert "./run.sh --dir" in results and "conf/train_asr_tiny.yaml" in results
    for s in ("dev", "test", "real"):
        row = re.search(rf"^\| {s} \| (\d+) \| (\d+) \| ([\d.]+) \|", results, re.M)
        assert row, f"no WER row for {s} in RESULTS.md"
        assert int(row.group(1)) > 0 and float(row.group(3)) >= 0.0
    assert (tmp_path / "exp/asr_tiny/compute.json").is_file()
    assert (tmp_path / "exp/asr_tiny/tensorboard").is_dir()
    again = run_sh(*args)
    assert again.stderr.count("skipping") == 7, again.stderr
