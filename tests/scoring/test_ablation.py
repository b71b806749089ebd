"""local/ablation.py: the accuracy ablation table from made-up decode directories."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("ablation", ROOT / "local" / "ablation.py")
ablation = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ablation)

REFS = {"t-1": "the cat sat", "t-2": "on a mat", "t-3": "all day long"}


def _epoch(n, seconds):
    return (f"[vm] x (trainer:392) INFO: {n}epoch results: [train] loss=1.0, time={seconds} seconds, "
            f"total_count=9, [valid] loss=2.0, time=3.0 seconds\n")


def _decode(root: Path, name: str, hyps: dict, epoch_secs, wall: float, jobs: int) -> Path:
    exp = root / name
    dec = exp / "decode_x"
    (dec / "test" / "logdir").mkdir(parents=True)
    exp.joinpath("train.log").write_text("".join(_epoch(i + 1, s) for i, s in enumerate(epoch_secs)))
    (dec / "test" / "text").write_text("".join(f"{u} {h}\n" for u, h in hyps.items()))
    (dec / "test" / "wall_seconds").write_text(f"{wall}\n")
    for j in range(jobs):
        (dec / "test" / "logdir" / f"keys.{j:02d}").write_text("")
    errors = sum(r != hyps[u] for u, r in REFS.items())
    fam = {"espeak": {"n_utts": 2, "wer": 0.5}, "flite": {"n_utts": 1, "wer": 0.0}}
    scores = {"test": {"words": {"wer": errors / 9}, "chars": {"cer": errors / 30}, "families": fam}}
    (dec / "scores.json").write_text(json.dumps({"scores": scores, "command": f"./run.sh --asr_tag {name}"}))
    return dec


def test_table_rows_timing_rtf_and_bootstrap(tmp_path):
    dump = tmp_path / "dump"
    (dump / "test").mkdir(parents=True)
    (dump / "test" / "text").write_text("".join(f"{u} {r}\n" for u, r in REFS.items()))
    (dump / "test" / "utt2num_samples").write_text("t-1 16000\nt-2 16000\nt-3 32000\n")  # 4 s of audio
    a = _decode(tmp_path, "asr_a", {"t-1": "the cat", "t-2": "on mat", "t-3": "all day"}, [60, 70, 80], 2.0, 2)
    b = _decode(tmp_path, "asr_b", dict(REFS), [30, 200, 40, 50], 1.0, 1)
    out = tmp_path / "RESULTS.md"
    ablation.main(["--row", f"old={a}", "--row", f"new = better={b}", "--dump", str(dump), "--sets", "test",
                   "--results_file", str(out), "--command", "local/run_ablation.sh"])
    text = out.read_text()
    assert "<!-- BEGIN ablation -->" in text
    # median epoch x epochs: 70 s x 3 = 3.5 min; 45 s x 4 = 3.0 min (the slow 200 s epoch does not count)
    # RTF: 2 s x 2 jobs / 4 s = 1.0; 1 s x 1 job / 4 s = 0.25
    assert "| old | 33.3 / 10.0 | 50 / 0 | 3 | 3.5 | 1.000 |" in text, text
    assert "| new = better | 0.0 / 0.0 | 50 / 0 | 4 | 3.0 | 0.250 |" in text, text
    assert "- new = better vs old: difference -" in text and "95% CI" in text
    ablation.main(["--row", f"old={a}", "--row", f"new={b}", "--pair", "old::new", "--dump", str(dump),
                   "--sets", "test", "--results_file", str(out)])
    assert "- old vs new: difference +" in out.read_text()
    with pytest.raises(SystemExit, match="expected LABEL_A::LABEL_B"):
        ablation.main(["--row", f"old={a}", "--pair", "old::nope", "--dump", str(dump), "--sets", "test",
                       "--results_file", str(out)])
    assert "`./run.sh --asr_tag asr_b`" in text and "Table command: `local/run_ablation.sh`" in text


def test_bad_rows_and_missing_files(tmp_path):
    with pytest.raises(SystemExit, match="expected LABEL=DECODE_DIR"):
        ablation.parse_row("no-separator")
    with pytest.raises(SystemExit, match=r"missing .*scores\.json \(run the stage"):
        ablation.main(["--row", f"x={tmp_path / 'nope'}", "--dump", str(tmp_path), "--results_file",
                       str(tmp_path / "R.md")])
