"""The recipe end to end on the tiny corpus, and its option handling."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def run_sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["./run.sh", *args], cwd=ROOT, capture_output=True, text=True, check=check, timeout=900)


def _kv(path: Path) -> dict[str, str]:
    pairs = (line.split(" ", 1) for line in path.read_text().splitlines() if line.strip())
    return {p[0]: p[1].strip() if len(p) > 1 else "" for p in pairs}


def _word_edits(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance between two word sequences (a plain DP, not the scorer's)."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        diag, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            diag, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diag + (r != h))
    return row[-1]


def _check_wer_row(results: str, s: str, ref: dict[str, str], hyp: dict[str, str]) -> None:
    """RESULTS.md's row of set ``s`` against the WER recomputed here from the reference and the
    hypotheses (every reference utterance scored; one without a hypothesis is all deletions)."""
    row = re.search(rf"^\| {s} \| (\d+) \| (\d+) \| ([\d.]+) \| [\d.]+ \| (\d+)/(\d+)/(\d+) \|$", results, re.M)
    assert row, f"no WER row for {s} in RESULTS.md"
    errors = sum(_word_edits(ref[u].split(), hyp.get(u, "").split()) for u in ref)
    words = sum(len(r.split()) for r in ref.values())
    assert (int(row.group(1)), int(row.group(2))) == (len(ref), words), s
    assert abs(float(row.group(3)) - 100 * errors / words) <= 0.05 + 1e-9, (s, row.group(0), errors, words)  # "%.1f"
    assert sum(int(row.group(i)) for i in (4, 5, 6)) == errors, (s, row.group(0), errors)  # the fewest edits


def test_word_edits_and_the_wer_row_check():
    assert _word_edits("a b c".split(), "a x c d".split()) == 2
    assert _word_edits([], "a b".split()) == 2 and _word_edits("a b".split(), []) == 2
    assert _word_edits("a b".split(), "b a".split()) == 2 and _word_edits("a".split(), "a".split()) == 0
    from espnet_omni.scoring.score import render, score_set

    ref = {"u1": "a b c", "u2": "dd e", "u3": "f"}  # CER 7 / 10: not the WER
    hyp = {"u1": "a x c d", "u3": "f"}  # 1 sub + 1 ins; u2 has none: 2 deletions -> 4 / 6 words
    args = argparse.Namespace(command="", config="", inference_config="")
    table = render("x", {"dev": score_set(ref, hyp, {})}, {}, args)  # what stage 8 writes
    _check_wer_row(table, "dev", ref, hyp)
    assert "| dev | 3 | 6 | 66.7 |" in table
    for bad in ("| dev | 3 | 6 | 0.7 | 1.0 | 1/2/1 |", "| dev | 3 | 6 | 66.7 | 1.0 | 1/1/1 |",
                "| dev | 2 | 5 | 80.0 | 1.0 | 1/2/1 |", "| test | 3 | 6 | 66.7 | 1.0 | 1/2/1 |"):
        with pytest.raises(AssertionError):
            _check_wer_row(bad, "dev", ref, hyp)


def recipe(script: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([script, *args], cwd=ROOT, capture_output=True, text=True, check=check, timeout=900)


def test_help_lists_every_stage_and_option():
    out = run_sh("--help").stdout
    for n in range(1, 12):
        assert re.search(rf"^ +{n} ", out, re.M), f"stage {n} missing from --help"
    assert "asr_config" in out and "stop_stage" in out and "budgets" in out and "supernet_config" in out
    for script, stages in (("local/run_table_a.sh", 7), ("local/run_table_b.sh", 4), ("local/run_rnnt.sh", 4),
                           ("local/score_dense.sh", 2)):
        out = recipe(script, "--help").stdout
        for n in range(1, stages + 1):
            assert re.search(rf"^ +{n} ", out, re.M), f"{script}: stage {n} missing from --help"
        assert "Options shared by every recipe" in out and "asr_config" in out, script


def test_unknown_option_lists_the_valid_ones():
    r = run_sh("--stgae", "3", check=False)
    assert r.returncode == 2
    assert "unknown option '--stgae'" in r.stderr and "--stage" in r.stderr and "--asr_config" in r.stderr
    r = recipe("local/run_table_a.sh", "--table_b_rows", "1", check=False)  # another recipe's option
    assert r.returncode == 2 and "local/run_table_a.sh: unknown option '--table_b_rows'" in r.stderr
    assert "--prune_targets" in r.stderr and "--asr_config" in r.stderr


def test_bad_choice_values_are_refused():
    r = run_sh("--token_type", "phone", check=False)
    assert r.returncode == 2 and "--token_type must be char or bpe" in r.stderr
    r = run_sh("--bn_calib_utts", "all", check=False)
    assert r.returncode == 2 and "--bn_calib_utts 'all': expected a whole number" in r.stderr
    r = run_sh("--use_lm", "yes", check=False)
    assert r.returncode == 2 and "--use_lm must be true or false" in r.stderr


@pytest.mark.parametrize("args, says", [
    (["--stage", "99"], "--stage 99: no such stage; valid stages: 1..11"),
    (["--stage", "abc"], "--stage 'abc': expected a stage number 1..11"),
    (["--stop_stage", "0"], "--stop_stage 0: no such stage"),
    (["--stage", "5", "--stop_stage", "2"], "--stage 5 is after --stop_stage 2: nothing would run"),
])
def test_meaningless_stage_ranges_are_errors(args, says):
    r = run_sh(*args, check=False)
    assert r.returncode == 2 and says in r.stderr, r.stderr
    r = recipe("local/run_table_a.sh", "--stage", "8", check=False)
    assert r.returncode == 2 and "--stage 8: no such stage; valid stages: 1..7" in r.stderr, r.stderr


@pytest.mark.parametrize("budgets, says", [
    ("", "--budgets is empty: give at least one budget"),
    ("0.5 0.3", "--budgets 0.5 0.3: not ascending (0.3 follows 0.5)"),
    ("0.3 0.3", "not ascending (0.3 follows 0.3)"),
    ("0.3 half", "'half' is not a number"),
    ("0.3 1.5", "1.5 is outside (0, 1]"),
])
def test_bad_budget_lists_are_refused_before_anything_runs(tmp_path, budgets, says):
    r = run_sh("--dir", str(tmp_path), "--budgets", budgets, check=False)
    assert r.returncode == 2 and says in r.stderr, r.stderr
    assert not (tmp_path / "data").exists()


def test_a_dir_with_a_space_is_refused_up_front(tmp_path):
    """ESPnet's scp/shape files cannot hold such a path: it failed at stage 4 inside a stats log."""
    r = run_sh("--dir", str(tmp_path / "my run"), "--stage", "2", "--stop_stage", "2", check=False)
    assert r.returncode == 2 and "holds a space" in r.stderr and "my run" in r.stderr, r.stderr
    assert not (tmp_path / "my run").exists()


def test_a_second_run_in_the_same_dir_is_refused_naming_the_first(tmp_path):
    """Two ./run.sh in one --dir ran the same stages on the same files at once."""
    import fcntl

    with open(tmp_path / ".lock.run.sh", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a run is at work in this dir
        lock.write("pid 4242, started 2026-12-07T10:00:00\n")
        lock.flush()
        r = run_sh("--dir", str(tmp_path), "--stage", "2", "--stop_stage", "2", check=False)
    assert r.returncode == 1, r.stderr
    assert "another ./run.sh is running in --dir" in r.stderr and "pid 4242" in r.stderr, r.stderr
    assert not (tmp_path / "dump").exists()


def test_stage2_duration_limits_drop_training_utterances_only(tmp_path):
    """--min_sec/--max_sec drop train utterances with a warning; every test set (dev too, the
    valid set, as it is scored) keeps all of its utterances, so its WER covers the whole set."""
    import numpy as np
    import soundfile as sf

    sets = ("train", "dev", "test", "test_seen", "real")
    for name in sets:
        d = tmp_path / "data" / name
        d.mkdir(parents=True)
        for utt, n in (("s-long", 16000), ("s-short", 1600)):  # 1 s and 0.1 s (< --min_sec 0.5)
            sf.write(d / f"{utt}.wav", np.full(n, 0.1), 16000, subtype="PCM_16")
        (d / "wav.scp").write_text(f"s-long {d / 's-long.wav'}\ns-short {d / 's-short.wav'}\n")
        (d / "text").write_text("s-long hello world\ns-short hi\n")
        (d / "utt2spk").write_text("s-long s\ns-short s\n")
    r = run_sh("--dir", str(tmp_path), "--stage", "2", "--stop_stage", "2")
    for name in sets:
        utts = [line.split()[0] for line in (tmp_path / "dump/raw" / name / "wav.scp").read_text().splitlines()]
        assert utts == (["s-long"] if name == "train" else ["s-long", "s-short"]), name
    warned = [line for line in r.stderr.splitlines() if "WARNING" in line]
    assert len(warned) == 1 and f"{tmp_path}/data/train: dropped 1 of 2 utterances by duration" in warned[0], r.stderr
    # the last line names the range that ran, not the recipe's last stage
    assert r.stderr.rstrip().splitlines()[-1].endswith("(./run.sh) finished stages 2..2"), r.stderr[-300:]


def test_lm_stage_without_lm_text_names_the_missing_file(tmp_path):
    """--use_lm true on a data dir that has no LM text: an error naming the file and its stage."""
    r = run_sh("--dir", str(tmp_path), "--use_lm", "true", "--lm_config", "conf/train_lm_tiny.yaml",
               "--stage", "6", "--stop_stage", "6", check=False)
    assert r.returncode == 1
    assert f"no LM text: {tmp_path}/data/lm_pool.txt not found (stage 1" in r.stderr, r.stderr


def test_table_recipes_before_the_default_run_name_what_is_missing(tmp_path):
    for script in ("local/run_table_a.sh", "local/run_table_b.sh", "local/run_rnnt.sh"):
        r = recipe(script, "--dir", str(tmp_path), check=False)
        assert r.returncode == 1, r.stderr
        assert "the default run's formatted data (run.sh stage 2) is missing" in r.stderr, r.stderr
        assert f"make it first with: ./run.sh --dir {tmp_path} --stop_stage 6" in r.stderr, r.stderr
    # data and stats there, the dense model not: that experiment is named
    (tmp_path / "dump/raw/train").mkdir(parents=True)
    (tmp_path / "dump/raw/train/wav.scp").write_text("")
    (tmp_path / "exp/asr_stats_char/train").mkdir(parents=True)
    (tmp_path / "exp/asr_stats_char/train/feats_stats.npz").write_text("")
    r = recipe("local/run_table_a.sh", "--dir", str(tmp_path), check=False)
    assert r.returncode == 1
    assert f"the default run's dense model (run.sh stage 5, experiment {tmp_path}/exp/asr_ctc) is missing" in r.stderr
    r = recipe("local/score_dense.sh", "--dir", str(tmp_path), check=False)
    assert r.returncode == 1 and f"experiment {tmp_path}/exp/asr_ctc) is missing" in r.stderr, r.stderr


TINY = ["--size", "tiny", "--asr_config", "conf/train_asr_tiny.yaml", "--lm_config", "conf/train_lm_tiny.yaml",
        "--test_sets", "test", "--nj", "1"]
TINY_MAIN = ["--supernet_config", "conf/train_asr_tiny_dual_omni.yaml", "--budgets", "0.75 0.85 0.95",
             "--search_args", "--population 4 --generations 2", "--pareto_sets", "test", "--latency_set", "test"]


@pytest.fixture(scope="module")
def tiny_main(tmp_path_factory) -> Path:
    """The main job (every stage of run.sh) on the tiny corpus, once: the table recipes start from it."""
    tmp_path = tmp_path_factory.mktemp("tiny_main")
    r = run_sh("--dir", str(tmp_path), *TINY, *TINY_MAIN)
    (tmp_path / "run.stderr").write_text(r.stderr)
    return tmp_path


def test_tiny_main_job_writes_the_pareto_table_and_plot(tiny_main):
    tmp_path = tiny_main
    results = (tmp_path / "RESULTS.md").read_text()
    table = results.split("<!-- BEGIN pareto -->")[1].split("<!-- END")[0]
    sup = tmp_path / "exp/asr_tiny_dual_omni"
    assert (sup / "pareto/pareto.png").stat().st_size > 1000
    assert "![Pareto plot](" in table and "conf/train_asr_tiny_dual_omni.yaml" in table
    ref = _kv(tmp_path / "dump/raw/test/text")
    search = json.loads((sup / "search/search.json").read_text())
    assert search["mode"] == "streaming" and [r["budget"] for r in search["results"]] == [0.75, 0.85, 0.95]
    names = ["dense", "frac0.75", "frac0.85", "frac0.95"]
    for name in names:
        row = re.search(rf"^\| {re.escape(name)} \| (full-context|streaming) \| ([\d.]+) M \((\d+)%\) \| [\d.]+ \| "
                        r"([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) / [\d.]+ / [\d.]+ / (\d+|-) / \d+ \|$", table, re.M)
        assert row, (name, table)
        assert row.group(1) == ("full-context" if name == "dense" else "streaming")
        export = json.loads((sup / f"pareto/{name}/export.json").read_text())
        assert abs(float(row.group(2)) - export["nonzero_params"] / 1e6) < 0.006, (name, row.group(0))
        calib = export["bn_calibration"]
        assert calib["mode"] == ("full" if name == "dense" else "streaming") and calib["utts"] > 0, calib
        # each mode's WER recomputed here from the decoded texts (the plain DP of this file)
        decodes = {"chunk": "chunk_by_chunk_decode_ctc_lm_valid.loss.ave_lm_tiny",
                   "full": "decode_decode_ctc_lm_valid.loss.ave_lm_tiny_full",
                   "streaming": "decode_decode_ctc_lm_valid.loss.ave_lm_tiny_streaming"}
        for col, mode in ((4, "chunk"), (5, "full"), (6, "streaming")):
            hyp = _kv(sup / f"pareto/{name}/{decodes[mode]}/test/text")
            assert set(hyp) == set(ref)
            errors = sum(_word_edits(ref[u].split(), hyp[u].split()) for u in ref)
            words = sum(len(v.split()) for v in ref.values())
            assert abs(float(row.group(col)) - 100 * errors / words) <= 0.05 + 1e-9, (name, mode)
        opts = (sup / f"pareto/{name}/decode_decode_ctc_lm_valid.loss.ave_lm_tiny_streaming/test/decode.opts").read_text()
        assert "--encoder_mode streaming" in opts and "--lm_file" in opts
        lat = json.loads((sup / f"pareto/{name}/{decodes['chunk']}/test/latency.json").read_text())
        assert lat["num_threads"] == 1 and lat["streaming"]["chunk_size"] == 4
        assert lat["lm_weight"] > 0 and lat["beam_size"] > 1  # the recipe's inference config, the LM fused
        assert "--lm_file" in (sup / f"pareto/{name}/{decodes['chunk']}/test/decode.opts").read_text()
    # a sub-network's export is smaller than the dense network's; the dense copy of every export
    # is a stock ESPnet model
    sizes = [json.loads((sup / f"pareto/{n}/export.json").read_text())["nonzero_params"] for n in names]
    assert sizes[0] > max(sizes[1:])
    assert yaml.safe_load((sup / "pareto/frac0.75/dense/config.yaml").read_text())["encoder"] == "conformer"
    # a rerun skips every finished stage; decoding keeps every decoded set
    again = run_sh("--dir", str(tmp_path), *TINY, *TINY_MAIN)
    assert again.stderr.count("skipping") == 9, again.stderr
    assert "utts, " not in again.stderr and again.stderr.count("kept") == 12, again.stderr
    # other budgets in the same dir: the search stage says what differs
    other = run_sh("--dir", str(tmp_path), *TINY, *TINY_MAIN[:2], "--budgets", "0.8 0.9 0.95",
                   "--stage", "8", "--stop_stage", "8", check=False)
    assert other.returncode == 1 and "made with: budgets=0.75 0.85 0.95" in other.stderr, other.stderr


def test_tiny_dense_model_scored_with_the_lm(tiny_main):
    """local/score_dense.sh: the default run's dense model decoded with the LM and scored (the ablation's
    and Table A's dense row); reruns keep what is up to date and redo what is stale."""
    tmp_path = tiny_main
    args = ["--dir", str(tmp_path), "--asr_config", "conf/train_asr_tiny.yaml", "--lm_config",
            "conf/train_lm_tiny.yaml", "--test_sets", "test", "--nj", "1"]
    recipe("local/score_dense.sh", *args)
    results = (tmp_path / "RESULTS.md").read_text()
    assert "local/score_dense.sh --dir" in results and "decode_ctc_lm.yaml" in results
    assert float((tmp_path / "exp/lm_tiny/perplexity_dev/ppl").read_text()) > 1.0
    lm_text = {line.split(" ", 1)[1] for line in (tmp_path / "data/lm/train.txt").read_text().splitlines()}
    train_text = {line.split(" ", 1)[1] for line in (tmp_path / "dump/raw/train/text").read_text().splitlines()}
    assert train_text <= lm_text and len(lm_text) > len(train_text)
    held = {line.split(" ", 1)[1] for line in (tmp_path / "dump/raw/test/text").read_text().splitlines()}
    assert held and not held & lm_text
    decode = tmp_path / "exp/asr_tiny/decode_decode_ctc_lm_valid.loss.ave_lm_tiny"
    assert "--lm_file" in (decode / "test/decode.opts").read_text()
    _check_wer_row(results, "test", _kv(tmp_path / "dump/raw/test/text"), _kv(decode / "test" / "text"))
    assert (tmp_path / "exp/asr_tiny/compute.json").is_file() and (tmp_path / "exp/asr_tiny/tensorboard").is_dir()
    kept = recipe("local/score_dense.sh", *args)
    assert kept.stderr.count("kept") == 1 and "utts, " not in kept.stderr, kept.stderr
    os.utime(tmp_path / "exp/lm_tiny/valid.loss.ave.pth")  # a newer LM: the set is decoded again
    redone = recipe("local/score_dense.sh", *args)
    assert "kept" not in redone.stderr and redone.stderr.count("utts, ") == 1, redone.stderr
    # a finished stage asked for with other options: an error saying what differs, not a silent skip
    other = run_sh("--dir", str(tmp_path), *TINY, "--seed", "7", "--stage", "1", "--stop_stage", "1", check=False)
    assert other.returncode == 1 and "was made with other options" in other.stderr, other.stderr
    assert "made with: seed=0" in other.stderr and "now:       seed=7" in other.stderr
    assert "remove " in other.stderr and ".stage1.embedded.done to redo stage 1" in other.stderr


def test_tiny_table_a_from_the_main_job(tiny_main):
    """local/run_table_a.sh (dense row, supernet, individual pruning, export, search, decode, Table A)
    on the tiny main job's outputs."""
    tmp_path = tiny_main
    common = ["--dir", str(tmp_path), "--asr_config", "conf/train_asr_tiny.yaml", "--lm_config",
              "conf/train_lm_tiny.yaml", "--test_sets", "test", "--nj", "1", "--use_lm", "false"]
    recipe("local/run_table_a.sh", *common, "--omni_config", "conf/train_asr_tiny_omni.yaml",
           "--prune_config", "conf/train_asr_tiny_prune.yaml", "--prune_targets", "0.5 0.8",
           "--prune_ramp_steps", "2", "--search_args", "--population 4 --generations 2")
    table = (tmp_path / "RESULTS.md").read_text().split("<!-- BEGIN table_a -->")[1]
    for s in ("0.5", "0.8"):
        assert re.search(rf"^\| {s} \| \(a\) individual \| [\d,]+ \| [\d,]+ \| [\d.]+ \|", table, re.M)
        assert re.search(rf"^\| {s} \| \(b\) omni sub-network \| [\d,]+ \| [\d,]+ \| [\d.]+ \|", table, re.M)
    assert "the one supernet" in table and (tmp_path / "exp/table_a.png").stat().st_size > 0
    budget = json.loads((tmp_path / "exp/asr_tiny_prune0.8/subnet.json").read_text())["encoder_nonzero_params"]
    found = yaml.safe_load((tmp_path / f"exp/asr_tiny_omni/search/subnet_{budget}.yaml").read_text())
    assert found["sparsities"], "the search wrote a sub-network for the budget"
    for d in ("asr_tiny_omni/export_0.8", "asr_tiny_prune0.8/export"):  # both sides recalibrated alike
        calib = json.loads((tmp_path / f"exp/{d}/export.json").read_text())["bn_calibration"]
        assert calib["layers"] > 0 and calib["utts"] > 0, (d, calib)
    assert "(a) individual: re-estimated for each sub-network on" in table, table
    assert re.search(r"^- 0\.8: difference [+-]\d+\.\d points, 95% CI ", table, re.M), table
    # another supernet run (here: the same one under a label) is tabulated beside (b)
    (tmp_path / "exp/asr_tiny_omni/.table_a_stage7.done").unlink()
    recipe("local/run_table_a.sh", *common, "--stage", "7", "--stop_stage", "7", "--prune_targets", "0.5 0.8",
           "--table_a_also", f"again={tmp_path / 'exp/asr_tiny_omni'}")
    table = (tmp_path / "RESULTS.md").read_text().split("<!-- BEGIN table_a -->")[1]
    assert re.search(r"^\| 0.8 \| \(b\) omni sub-network, again \| [\d,]+ \|", table, re.M), table
    assert "Supernet again (" in table and "distillation weight" in table


def test_tiny_table_b_from_the_main_job(tiny_main):
    """local/run_table_b.sh (wav2vec 2.0 pretraining, streaming-alone / dual-mode training and
    fine-tuning, both modes decoded, Table B) on the tiny main job's outputs."""
    tmp_path = tiny_main
    common = ["--dir", str(tmp_path), "--asr_config", "conf/train_asr_tiny.yaml", "--lm_config",
              "conf/train_lm_tiny.yaml", "--test_sets", "test", "--nj", "1", "--use_lm", "false", "--dual_tag", "dual"]
    opts = ["--stream_config", "conf/train_asr_tiny_stream.yaml", "--dual_config", "conf/train_asr_tiny_dual.yaml",
            "--ssl_config", "conf/pretrain_tiny_w2v.yaml", "--ssl_dual_config", "conf/pretrain_tiny_w2v_dual.yaml",
            "--ssl_untranscribed", "0"]
    recipe("local/run_table_b.sh", *common, *opts)
    table = (tmp_path / "RESULTS.md").read_text().split("<!-- BEGIN table_b -->")[1].split("<!-- END")[0]
    for name in ("dense full-context model alone", "sparse streaming model alone", "dual-mode supernet, random init",
                 "fine-tuned from plain wav2vec 2.0", "fine-tuned from dual-mode wav2vec 2.0"):
        assert re.search(rf"^\| \(\d\) [^|]*{name} \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ M / [\d.]+ MB \| "
                         rf"[\d.]+ M / [\d.]+ MB \| [\d.]+ \| \d+ CPU-s( \+ \d+ CPU-s pretraining)? \|", table, re.M), (name, table)
    # the streaming network also decoded like the full-context one (its encoder in streaming mode)
    assert "streaming WER %, decoded like full-context (test)" in table, table
    for how in ("chunk by chunk, greedy", "decoded like full-context"):
        assert f"C3, sparse streaming ({how}) mode" in table and f"C4, sparse streaming ({how}) mode" in table
    assert (tmp_path / "exp/asr_tiny_dual/table_b/export_stream/decode_decode_ctc_valid.loss.ave/scores.json").is_file()
    assert re.search(r"C3, sparse streaming \(chunk by chunk, greedy\) mode on `test`: .* \(difference [+-][\d.]+ points, 95% CI [+-][\d.]+ \.\. [+-][\d.]+: (not )?significant\)", table), table
    pretrain_row = r"\| 1 \| [\d.]+ -> [\d.]+ \| [\d.]+ -> [\d.]+ \| 0\.167 \|"
    assert re.search(r"^\| `ssl_w2v_dual` \| streaming, sparsity 50% " + pretrain_row, table, re.M), table
    # stage 1 wrote its own summary of both pretrainings
    summary = (tmp_path / "RESULTS.md").read_text().split("<!-- BEGIN ssl_pretraining -->")[1].split("<!-- END")[0]
    assert re.search(r"^\| `ssl_w2v` \| dense full-context " + pretrain_row, summary, re.M), summary
    # fine-tuning started from the pretrained weights (ESPnet logs each --init_param it loads)
    log = (tmp_path / "exp/asr_tiny_dual_w2vdual/train.log").read_text()
    assert "ssl_w2v_dual/valid.loss.ave.pth:preencoder:encoder.embed" in log
    exp = tmp_path / "exp"
    # row 2 is sparse in both modes; rows 1 and 3 have a dense full-context network
    sizes = {r: json.loads((exp / f"asr_tiny{r}/table_b/export_full/export.json").read_text())["nonzero_params"]
             for r in ("", "_stream", "_dual")}
    assert sizes["_stream"] < sizes[""] == sizes["_dual"]
    stream = json.loads((exp / "asr_tiny_dual/table_b/export_stream/export.json").read_text())["nonzero_params"]
    assert stream < sizes["_dual"]
    lat = json.loads((exp / "asr_tiny_dual/table_b/stream/test/latency.json").read_text())
    assert lat["num_threads"] == 1 and lat["streaming"]["chunk_size"] == 4
    r = recipe("local/run_table_b.sh", *common, "--table_b_rows", "1 9", "--stage", "4", "--stop_stage", "4", check=False)
    assert r.returncode == 2 and "no row '9'" in r.stderr
    # another selection of rows keeps the rows already evaluated with the same options and model
    before = (exp / "asr_tiny_dual/table_b/export_full/model.pth").stat().st_mtime_ns
    r = recipe("local/run_table_b.sh", *common, "--table_b_rows", "1 3", "--stage", "3", "--stop_stage", "3")
    assert "row 3: both modes of" in r.stderr and "evaluated already with these options" in r.stderr, r.stderr
    assert (exp / "asr_tiny_dual/table_b/export_full/model.pth").stat().st_mtime_ns == before
    # with the LM (the recipes' default): the full-context decoding fuses it, and the row is re-evaluated
    lm_common = [x for x in common if x not in ("--use_lm", "false")]
    recipe("local/run_table_b.sh", *lm_common, "--table_b_rows", "1", "--stage", "3", "--stop_stage", "3")
    assert "lm_tiny/valid.loss.ave.pth" in (exp / "asr_tiny/table_b/.eval.done").read_text()
    assert "(lm): SequentialRNNLM" in (exp / "asr_tiny/table_b/eval.log").read_text()
    # C4 with extra untranscribed audio: synthesized (training voices, unused sentences), pretrained on
    # with the training audio, the amount recorded beside the pretraining
    recipe("local/run_table_b.sh", *common, *opts, "--table_b_rows", "4", "--ssl_untranscribed", "6",
           "--stage", "1", "--stop_stage", "1")
    extra = _kv(tmp_path / "dump/raw/untranscribed_u6/wav.scp")
    train = _kv(tmp_path / "dump/raw/train/wav.scp")
    assert len(extra) == 6 and not set(extra) & set(train)
    assert _kv(tmp_path / "dump/raw/ssl_train_u6/wav.scp") == {**train, **extra}
    assert not {_kv(tmp_path / "data/untranscribed/text")[u] for u in extra} & set(_kv(tmp_path / "dump/raw/train/text").values())
    audio = json.loads((exp / "ssl_w2v_u6/pretrain_audio.json").read_text())["sets"]
    assert [(a["name"], a["utts"]) for a in audio] == [("train", len(train)), ("untranscribed_u6", 6)]
    summary = (tmp_path / "RESULTS.md").read_text().split("<!-- BEGIN ssl_pretraining -->")[1].split("<!-- END")[0]
    assert re.search(r"^\| `ssl_w2v_u6` \| dense full-context .* h `train` \(\d+ utts\) \+ [\d.]+ h `untranscribed_u6` "
                     r"\(6 utts\) \|$", summary, re.M), summary
    assert "ssl_train_u6/wav.scp" in (exp / "ssl_w2v_u6/train.log").read_text()


def test_tiny_rnnt_rows_from_the_main_job(tiny_main):
    """local/run_rnnt.sh (dense RNN-T, the RNN-T dual-mode omni supernet from it, the four models
    decoded greedily, the RNN-T supernet's streaming network also with the LM by modified beam
    search, the rnnt section) on the tiny main job's outputs."""
    tmp_path = tiny_main
    common = ["--dir", str(tmp_path), "--asr_config", "conf/train_asr_tiny.yaml", "--lm_config",
              "conf/train_lm_tiny.yaml", "--test_sets", "test", "--nj", "1", "--stream_sparsity", "0.5"]
    # RNN-T with the LM at beam 2: the tiny untrained models make beam 8 (the recipe's) take minutes
    lm_conf = tmp_path / "decode_rnnt_lm_beam2.yaml"
    lm_conf.write_text("beam_size: 2\nlm_weight: 0.3\nnbest: 1\n")
    opts = ["--rnnt_config", "conf/train_asr_tiny_rnnt.yaml",
            "--rnnt_supernet_config", "conf/train_asr_tiny_rnnt_dual_omni.yaml", "--rnnt_lm_decode_config", str(lm_conf)]
    r = recipe("local/run_rnnt.sh", *common, "--supernet_tag", "nowhere", *opts, check=False)
    assert r.returncode == 1 and f"{tmp_path}/exp/asr_tiny_nowhere" in r.stderr and "./run.sh --dir" in r.stderr, r.stderr
    recipe("local/run_rnnt.sh", *common, *opts)
    exp = tmp_path / "exp"
    # the supernet started from the dense RNN-T model, prediction and joint networks included
    log = (exp / "asr_tiny_rnnt_dual_omni/train.log").read_text()
    assert "asr_tiny_rnnt/valid.loss.ave.pth" in log
    conf = yaml.safe_load((exp / "asr_tiny_rnnt_dual_omni/rnnt_cmp/export_stream/config.yaml").read_text())
    assert conf["decoder"] == "transducer"
    table = (tmp_path / "RESULTS.md").read_text().split("<!-- BEGIN rnnt -->")[1].split("<!-- END")[0]
    for name, head, stream in (("asr_tiny", "CTC", False), ("asr_tiny_rnnt", "RNN-T", False),
                               ("asr_tiny_dual_omni", "CTC", True), ("asr_tiny_rnnt_dual_omni", "RNN-T", True)):
        # streaming WER greedy, with the LM (the RNN-T supernet only), RTF
        stream_cols = (r"[\d.]+ \| " + (r"[\d.]+" if head == "RNN-T" else "-") + r" \| [\d.]+") if stream else r"- \| - \| -"
        # full-context WER greedy, then with the LM (the tiny main job has one)
        assert re.search(rf"^\| `{name}` \((dense|supernet)\) \| {head} \| \d+ \| \d+ / \d+ \| \d+ \| [\d.]+ \| [\d.]+ \| "
                         rf"{stream_cols} \| [\d.]+ M( / [\d.]+ M)? \|$", table, re.M), (name, table)
        lm_decode = exp / name / "rnnt_cmp/export_full/decode_lm"
        assert (lm_decode / "test/text").is_file() and "lm_file" in (lm_decode / "test/decode.opts").read_text()
    assert "decode_rnnt_lm_beam2.yaml" in table and "conf/decode_ctc_lm.yaml" in table, table
    assert re.search(r"supernet, 50% streaming on `test`: RNN-T [\d.]+% vs CTC [\d.]+% \(difference", table), table
    assert re.search(r"dense model, full-context with the LM on `test`: RNN-T [\d.]+% vs CTC [\d.]+% \(difference",
                     table), table
    assert re.search(r"Targets: the RNN-T supernet's training wall time per epoch \(median epoch\) is [\d.]+x", table), table
    # the RNN-T supernet's streaming network chunk by chunk with the LM: modified beam search, beam 4
    assert re.search(r"supernet, 50% streaming on `test`: with the LM \(beam search\) [\d.]+% vs greedy [\d.]+% "
                     r"\(difference", table) and "decode_rnnt_stream_lm.yaml" in table, table
    lat = json.loads((exp / "asr_tiny_rnnt_dual_omni/rnnt_cmp/stream_lm/test/latency.json").read_text())
    assert (lat["beam_size"], lat["lm_weight"], lat["num_threads"]) == (4, 0.3, 1), lat
    # the RNN-T streaming text is the streaming CLI's on the same sub-network (transducer greedy)
    lat = json.loads((exp / "asr_tiny_rnnt_dual_omni/rnnt_cmp/stream/test/latency.json").read_text())
    assert lat["num_threads"] == 1
    # re-run: every model kept
    r = recipe("local/run_rnnt.sh", *common, *opts, "--stage", "3")
    assert r.stderr.count("evaluated already with these options") == 5, r.stderr  # 4 models + streaming with the LM
    assert len(re.findall(r"decoding test: kept \S+/rnnt_cmp/export_full/decode_lm/test/text", r.stderr)) == 4, r.stderr
    assert "no --distill_heads: nothing to train" in r.stderr and "BEGIN rnnt_distill" not in (tmp_path / "RESULTS.md").read_text()
    # stages 5-6: the supernet again with distillation through each head, beside stage 2's
    r = recipe("local/run_rnnt.sh", *common, *opts, "--stage", "5", "--distill_heads", "ctc joint", check=False)
    assert r.returncode == 2 and "--distill_heads 'ctc joint': expected ctc and/or transducer, got 'joint'" in r.stderr, r.stderr
    recipe("local/run_rnnt.sh", *common, *opts, "--stage", "5", "--distill_heads", "ctc transducer")
    for h in ("ctc", "transducer"):
        omni = yaml.safe_load((exp / f"asr_tiny_rnnt_dual_omni_kd_{h}/config.yaml").read_text())["omni_conf"]
        assert omni["split_batch"] is False and omni["distill_head"] == h and omni["distill_weight"] == 1.0, omni
        assert "distill_" in (exp / f"asr_tiny_rnnt_dual_omni_kd_{h}/train.log").read_text()
    table = (tmp_path / "RESULTS.md").read_text().split("<!-- BEGIN rnnt_distill -->")[1].split("<!-- END")[0]
    assert re.search(r"^\| `asr_tiny_rnnt_dual_omni` \| true \| none \| \d+ \|", table, re.M), table
    for h in ("ctc", "transducer"):
        assert re.search(rf"^\| `asr_tiny_rnnt_dual_omni_kd_{h}` \| false \| {h} \(1\) \| \d+ \| \d+ / \d+ \| [\d.]+ \| [\d.]+ \|$",
                         table, re.M), table
    assert re.search(r"50% streaming on `test`: `asr_tiny_rnnt_dual_omni_kd_ctc` [\d.]+% vs "
                     r"`asr_tiny_rnnt_dual_omni_kd_transducer` [\d.]+% \(difference", table), table


def test_librispeech_recipe_end_to_end_on_a_fake_tree(tmp_path):
    """egs/librispeech/asr1/run.sh: every stage of the main job (data prep from a fake LibriSpeech tree,
    format, tokens, stats, dense model, supernet, search, export, both modes decoded, Pareto table) on
    CPU with the tiny configs; its paper-scale configs are built by test_recipe_configs."""
    import numpy as np
    import soundfile as sf

    ls = tmp_path / "LibriSpeech"
    rng = np.random.default_rng(0)
    words = ["GO", "DO", "YOU", "HEAR", "THE", "FRIEND", "ZERO", "ONE"]
    for subset in ("train-clean-100", "dev-clean", "test-clean", "test-other"):
        chap = ls / subset / "84" / "121123"
        chap.mkdir(parents=True)
        lines = []
        for i in range(4):
            utt = f"84-121123-{i:04d}"
            sf.write(chap / f"{utt}.flac", 0.1 * rng.standard_normal(16000), 16000, format="FLAC")
            lines.append(f"{utt} " + " ".join(rng.choice(words, 4)))
        (chap / "84-121123.trans.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "ls"
    r = subprocess.run(["egs/librispeech/asr1/run.sh", "--dir", str(out), "--token_type", "char", "--ngpu", "0",
                        "--nj", "1", "--use_lm", "false", "--asr_config", "conf/train_asr_tiny.yaml",
                        "--supernet_config", "conf/train_asr_tiny_dual_omni.yaml", "--budgets", "0.8 0.95",
                        "--search_args", "--population 2 --generations 1"],
                       cwd=ROOT, capture_output=True, text=True, timeout=900,
                       env={**os.environ, "LIBRISPEECH": str(ls)})
    assert r.returncode == 0, r.stderr[-3000:]
    for s in ("train_clean_100", "dev_clean", "test_clean", "test_other"):
        assert len((out / f"dump/raw/{s}/wav.scp").read_text().splitlines()) == 4
    table = (out / "RESULTS.md").read_text().split("<!-- BEGIN pareto -->")[1].split("<!-- END")[0]
    for name in ("dense", "frac0.8", "frac0.95"):
        assert re.search(rf"^\| {name} \| (full-context|streaming) \| [\d.]+ M", table, re.M), table
    assert "streaming WER, chunk by chunk `test_clean`" in table and "full-context WER `test_other`" in table
    assert (out / "exp/asr_tiny_dual_omni/pareto/pareto.png").is_file()
    assert not (ROOT / "egs/librispeech/asr1/exp").exists()  # --dir wins over the wrapper's own
