"""LM text: sources minus every evaluation sentence and the reserved slice."""

import hashlib
import subprocess
import sys
from pathlib import Path


from espnet_omni.corpus import lm_text as L

ROOT = Path(__file__).resolve().parents[2]


def _reserved(t: str) -> bool:
    return int(hashlib.sha1(t.encode()).hexdigest(), 16) % 10 == 0


def test_excludes_evaluation_sets_and_reserved_slice(tmp_path):
    pool = [f"the pool sentence {w}" for w in ("alpha", "beta", "gamma", "delta", "epsilon", "zeta",
                                               "eta", "theta", "iota", "kappa", "lambda", "mu")]
    pool += [f"words and more words {c}" for c in "abcdefghijklmnopqrstuvwxyz"]
    reserved = {s for s in pool if _reserved(s)}
    assert reserved, "the fixture needs at least one reserved sentence"
    (tmp_path / "pool.txt").write_text("\n".join(pool) + "\n\n")
    (tmp_path / "dev_text").write_text(f"u-1 {pool[0]}\nu-2 {pool[1].upper()}\n")
    (tmp_path / "train_text").write_text(f"t-1 {pool[2]}\nt-2 a train only sentence\n")
    out = tmp_path / "lm" / "train.txt"
    L.main(["--plain", str(tmp_path / "pool.txt"), "--kaldi", str(tmp_path / "train_text"),
            "--exclude", str(tmp_path / "dev_text"), "--out", str(out)])
    lines = out.read_text().splitlines()
    keys = [line.split(" ", 1)[0] for line in lines]
    text = [line.split(" ", 1)[1] for line in lines]
    assert keys == [f"lm{i:07d}" for i in range(len(lines))] and text == sorted(set(text))
    assert pool[0] not in text and pool[1] not in text  # excluded after normalization
    assert not reserved & set(text)
    assert "a train only sentence" in text and pool[2] in text
    assert set(text) == ({*pool, "a train only sentence"} - {pool[0], pool[1]}) - reserved


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "espnet_omni.corpus.lm_text", *args],
                          cwd=ROOT, capture_output=True, text=True)


def test_errors_name_the_file(tmp_path):
    r = _cli("--plain", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "o"))
    assert r.returncode == 1 and f"{tmp_path / 'nope.txt'}: LM text source not found" in r.stderr
    (tmp_path / "bad.txt").write_bytes(b"fine line\n\xff\xfe broken\n")
    r = _cli("--plain", str(tmp_path / "bad.txt"), "--out", str(tmp_path / "o"))
    assert r.returncode == 1 and f"{tmp_path / 'bad.txt'}:2: not UTF-8" in r.stderr
    (tmp_path / "k").write_text("only-a-key\n")
    r = _cli("--kaldi", str(tmp_path / "k"), "--out", str(tmp_path / "o"))
    assert r.returncode == 1 and f"{tmp_path / 'k'}:1: expected '<utt-id> <words>'" in r.stderr
    (tmp_path / "p").write_text("hello there\n")
    (tmp_path / "ev").write_text("e-1 hello there\n")
    r = _cli("--plain", str(tmp_path / "p"), "--exclude", str(tmp_path / "ev"), "--out", str(tmp_path / "o"))
    assert r.returncode == 1 and "no LM text left" in r.stderr
    r = _cli("--out", str(tmp_path / "o"))
    assert r.returncode == 1 and "no LM text source" in r.stderr
    assert not (tmp_path / "o").exists()
