"""The recipe end to end on the tiny corpus, and its option handling."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

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


def test_tiny_table_a_stages(tmp_path):
    """Stages 8-13 (supernet, individual pruning, export, search, decode, Table A) on the tiny corpus."""
    common = ["--dir", str(tmp_path), "--size", "tiny", "--asr_config", "conf/train_asr_tiny.yaml",
              "--test_sets", "test", "--nj", "1"]
    run_sh(*common)  # stages 1-7: Table A compares against the decoded dense model
    run_sh(*common, "--stage", "8", "--stop_stage", "13", "--omni_config", "conf/train_asr_tiny_omni.yaml",
           "--prune_config", "conf/train_asr_tiny_prune.yaml", "--prune_targets", "0.5 0.8",
           "--prune_ramp_steps", "2", "--search_args", "--population 4 --generations 2", "--test_sets", "test")
    table = (tmp_path / "RESULTS.md").read_text().split("<!-- BEGIN table_a -->")[1]
    for s in ("0.5", "0.8"):
        assert re.search(rf"^\| {s} \| \(a\) individual \| [\d,]+ \| [\d,]+ \| [\d.]+ \|", table, re.M)
        assert re.search(rf"^\| {s} \| \(b\) omni sub-network \| [\d,]+ \| [\d,]+ \| [\d.]+ \|", table, re.M)
    assert "the one supernet" in table and (tmp_path / "exp/table_a.png").stat().st_size > 0
    budget = json.loads((tmp_path / "exp/asr_tiny_prune0.8/subnet.json").read_text())["encoder_nonzero_params"]
    found = yaml.safe_load((tmp_path / f"exp/asr_tiny_omni/search/subnet_{budget}.yaml").read_text())
    assert found["sparsities"], "the search wrote a sub-network for the budget"
