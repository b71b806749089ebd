"""Scoring: error counts against an independent edit distance, and the results writer."""

import json
import random

import editdistance
import pytest

from espnet_omni.scoring import score
from espnet_omni.scoring.wer import align_counts, char_counts, word_counts


def test_counts_match_reference_edit_distance():
    rng = random.Random(0)
    for _ in range(500):
        ref = [rng.choice("abc") for _ in range(rng.randint(0, 8))]
        hyp = [rng.choice("abcd") for _ in range(rng.randint(0, 8))]
        c = align_counts(ref, hyp)
        assert c.errors == editdistance.eval(ref, hyp)
        assert c.ref_len == len(ref)


def test_word_and_char_counts():
    w = word_counts("the cat sat", "the bat sat down")
    assert (w.sub, w.dele, w.ins, w.ref_len) == (1, 0, 1, 3)
    c = char_counts("ab", "a  b")  # extra spaces collapse to one boundary
    assert (c.sub, c.dele, c.ins) == (0, 0, 1)
    assert word_counts("", "").rate == 0.0


def _write(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k} {v}\n" for k, v in lines.items()))


def test_score_cli_writes_results(tmp_path):
    ref = {"u1": "a b c d", "u2": "e f", "u3": "g"}
    hyp = {"u1": "a b c d", "u2": "e x"}  # u3 missing -> all deletions
    _write(tmp_path / "dump/test/text", ref)
    _write(tmp_path / "dump/test/utt2family", {"u1": "espeak", "u2": "flite", "u3": "flite"})
    _write(tmp_path / "exp/asr_x/dec/test/text", hyp)
    (tmp_path / "exp/asr_x/train.wall_seconds").write_text("60\n30\n")
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\nhand-written intro stays\n")
    argv = ["--exp", str(tmp_path / "exp/asr_x"), "--decode", "dec", "--dump", str(tmp_path / "dump"),
            "--sets", "test", "--results_file", str(results), "--command", "./run.sh --x y"]
    score.main(argv)
    s = json.loads((tmp_path / "exp/asr_x/dec/scores.json").read_text())
    words = s["scores"]["test"]["words"]
    assert (words["sub"], words["dele"], words["ins"], words["ref_len"]) == (1, 1, 0, 7)
    assert s["scores"]["test"]["families"]["flite"]["wer"] == pytest.approx(2 / 3)
    assert s["training"]["train_wall_seconds"] == 90
    text = results.read_text()
    assert "hand-written intro stays" in text and "./run.sh --x y" in text
    assert "| test | 3 | 7 | 28.6 |" in text
    score.main(argv)  # idempotent: the section is replaced, not appended
    assert results.read_text().count("<!-- BEGIN asr_x/dec -->") == 1


def test_section_from_absolute_paths_names_none(tmp_path, monkeypatch):
    """run.sh gives absolute --exp / --config and its command line as typed (``--dir /abs/checkout``):
    the section names them relative to the checkout, a sibling checkout as ``../gpu`` (issue 15)."""
    from espnet_omni.scoring import tables

    root = tmp_path / "main"
    monkeypatch.setattr(tables, "ROOT", root, raising=False)
    _write(root / "dump/test/text", {"u1": "a b"})
    _write(root / "exp/asr_x/dec/test/text", {"u1": "a b"})
    (root / "conf").mkdir()
    (root / "conf/train.yaml").write_text("max_epoch: 1\n")
    results = root / "RESULTS.md"
    score.main(["--exp", str(root / "exp/asr_x"), "--decode", "dec", "--dump", str(root / "dump"), "--sets", "test",
                "--results_file", str(results), "--config", str(root / "conf/train.yaml"),
                "--inference_config", str(tmp_path / "gpu/conf/decode.yaml"),
                "--command", f"./run.sh --dir {root} --results_file {results} --ssl_dir={tmp_path}/gpu/exp"])
    text = results.read_text()
    assert str(tmp_path) not in text
    assert "- command: `./run.sh --dir . --results_file RESULTS.md --ssl_dir=../gpu/exp`" in text
    assert "- training config: `conf/train.yaml`; decoding config: `../gpu/conf/decode.yaml`" in text


def test_missing_hypothesis_file_is_a_clear_error(tmp_path):
    _write(tmp_path / "dump/test/text", {"u1": "a"})
    with pytest.raises(SystemExit, match="missing .*dec/test/text"):
        score.main(["--exp", str(tmp_path / "exp"), "--decode", "dec", "--dump", str(tmp_path / "dump"),
                    "--sets", "test"])


def test_paired_bootstrap_interval():
    from espnet_omni.scoring.wer import paired_bootstrap

    ref = {f"u{i:02d}": "a b c d" for i in range(40)}
    same = paired_bootstrap(ref, ref, ref)
    assert same == {"delta": 0.0, "lo": 0.0, "hi": 0.0, "p_a_better": 0.0}
    # B gets one word of four wrong in every other utterance: A is better by 12.5 points
    worse = {u: ("a b x d" if i % 2 else r) for i, (u, r) in enumerate(sorted(ref.items()))}
    d = paired_bootstrap(ref, ref, worse)
    assert d["delta"] == pytest.approx(-12.5) and d["lo"] <= -12.5 * 0.5 and d["hi"] < 0 and d["p_a_better"] == 1.0
    assert paired_bootstrap(ref, ref, worse, seed=3) == paired_bootstrap(ref, ref, worse, seed=3)
    # one differing utterance of 40: the interval reaches 0 (the difference could be chance)
    one = dict(ref, u00="x x x x")
    d = paired_bootstrap(ref, one, ref)
    assert d["delta"] > 0 and d["lo"] == 0.0
    with pytest.raises(ValueError, match="no reference"):
        paired_bootstrap({}, {}, {})
    with pytest.raises(ValueError, match="level"):
        paired_bootstrap(ref, ref, ref, level=1.5)
