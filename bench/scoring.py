#!/usr/bin/env python3
"""WER/CER scoring speed: the old pure-Python alignment vs RapidFuzz's.

Usage:
    PYTHONPATH=. .venv/bin/python bench/scoring.py          # ~45 s CPU, ~1 min
Writes: bench/results/scoring.md and .json.

Scores a test set with ``espnet_omni.scoring.wer`` as it is now (one weighted
Levenshtein distance of RapidFuzz, C++, per utterance) and with the
implementation it replaced, kept below as :func:`old_align_counts` (a
pure-Python table of ``(cost, sub, del, ins)`` tuples, O(n m) per utterance).
The data are a real decode if the recipe's ablation outputs are there
(``--ref``: ``base/dump/raw/test/text``; ``--hyp``: the greedy CTC decode of
``base/exp/asr_abl_base``; ``--hyp_b``: its decode with the LM, the second
system of the paired bootstrap), else a synthetic set of 200 utterances x 10
words at about 30% WER (``--synthetic`` forces it). Each is timed as it is and
replicated 10x (the utterances repeated under new ids).

Timed, as CPU time of this process (``time.process_time``: other processes on
the machine disturb it less than wall time), median of the repeats: word
counts of every utterance (WER), character counts (CER), ``score_set`` (both
+ the per-family totals: what ``espnet_omni.scoring.score`` runs per set) and
``paired_bootstrap`` of the two systems (1000 resamples). The old timings
patch the old functions into the same code. Before timing, every utterance's
(sub, del, ins, ref words) and (sub, del, ins, ref characters) are compared
between old and new (they must be identical), and the bootstrap results too;
the files say how many utterances jiwer's ``process_words`` would split
differently (same error total, another minimal alignment), the reason it is
not used. Target: WER scoring of the test set >= 10x faster.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import statistics
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Callable, Sequence
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
from omni_sparsity import cpu_model, write_results  # noqa: E402

from espnet_omni.corpus.datadir import read_kv  # noqa: E402
from espnet_omni.scoring import score, wer  # noqa: E402
from espnet_omni.scoring.tables import rel, rel_text  # noqa: E402  (relative to the repository: no machine paths)
from espnet_omni.scoring.wer import ErrorCounts  # noqa: E402

TARGET = 10.0
DECODES = "base/exp/asr_abl_base"


# ------------------------------------------------- the old implementation (baseline)
def old_align_counts(ref: Sequence[str], hyp: Sequence[str]) -> ErrorCounts:
    """espnet_omni.scoring.wer.align_counts before RapidFuzz, verbatim."""
    n, m = len(ref), len(hyp)
    # Cells are (cost, sub, del, ins) for ref[:i] vs hyp[:j].
    prev = [(j, 0, 0, j) for j in range(m + 1)]  # empty ref: j insertions
    for i in range(1, n + 1):
        cur = [(i, 0, i, 0)]  # empty hyp: i deletions
        for j in range(1, m + 1):
            c_sub = prev[j - 1]
            same = ref[i - 1] == hyp[j - 1]
            cand = [
                (c_sub[0] + (0 if same else 1), c_sub[1] + (0 if same else 1), c_sub[2], c_sub[3]),
                (prev[j][0] + 1, prev[j][1], prev[j][2] + 1, prev[j][3]),  # deletion
                (cur[j - 1][0] + 1, cur[j - 1][1], cur[j - 1][2], cur[j - 1][3] + 1),  # insertion
            ]
            best = min(cand, key=lambda c: (c[0], -c[1]))
            cur.append(best)
        prev = cur
    cost, sub, dele, ins = prev[m]
    assert cost == sub + dele + ins
    return ErrorCounts(sub=sub, dele=dele, ins=ins, ref_len=n, n_utts=1)


def old_word_counts(ref: str, hyp: str) -> ErrorCounts:
    return old_align_counts(ref.split(), hyp.split())


def old_char_counts(ref: str, hyp: str) -> ErrorCounts:
    return old_align_counts(list(" ".join(ref.split())), list(" ".join(hyp.split())))


OLD = {"word_counts": old_word_counts, "char_counts": old_char_counts}
NEW = {"word_counts": wer.word_counts, "char_counts": wer.char_counts}


# ------------------------------------------------------------------------- data
def synthetic(n_utts: int = 200, n_words: int = 10, seed: int = 0) -> tuple[dict, dict, dict]:
    """References of ``n_words`` words and two systems at about 30% and 20% WER: a wrong
    word is a misspelling (one letter changed), a deletion, or an inserted word."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 8))) for _ in range(2000)]

    def noisy(words, p):
        out = []
        for w in words:
            r = rng.random()
            if r < p * 0.6:
                i = rng.randrange(len(w))
                out.append(w[:i] + rng.choice(letters) + w[i + 1:])
            elif r < p * 0.8:
                continue
            else:
                out.append(w)
                if r > 1 - p * 0.2:
                    out.append(rng.choice(vocab))
        return " ".join(out)

    ref = {f"utt{i:04d}": " ".join(rng.choice(vocab) for _ in range(n_words)) for i in range(n_utts)}
    return ref, {u: noisy(r.split(), 0.3) for u, r in ref.items()}, {u: noisy(r.split(), 0.2) for u, r in ref.items()}


def replicate(d: dict[str, str], times: int) -> dict[str, str]:
    return {f"{u}-r{k}": v for k in range(times) for u, v in d.items()}


# ----------------------------------------------------------------------- checks
def per_utt(funcs: dict, ref: dict, hyp: dict) -> list[tuple]:
    return [tuple((c.sub, c.dele, c.ins, c.ref_len) for c in
                  (funcs["word_counts"](ref[u], hyp.get(u, "")), funcs["char_counts"](ref[u], hyp.get(u, ""))))
            for u in sorted(ref)]


def jiwer_word_splits(ref: dict, hyp: dict) -> list[tuple[int, int, int]]:
    """Per-utterance (sub, del, ins) of jiwer.process_words (RapidFuzz's backtrace)."""
    import jiwer

    utts = sorted(ref)
    out = jiwer.process_words([ref[u] for u in utts], [hyp.get(u, "") for u in utts])
    rows = []
    for chunks in out.alignments:
        s = sum(c.ref_end_idx - c.ref_start_idx for c in chunks if c.type == "substitute")
        d = sum(c.ref_end_idx - c.ref_start_idx for c in chunks if c.type == "delete")
        i = sum(c.hyp_end_idx - c.hyp_start_idx for c in chunks if c.type == "insert")
        rows.append((s, d, i))
    return rows


# ----------------------------------------------------------------------- timing
def cpu_ms(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return 1000 * statistics.median(times)


def tasks(ref: dict, hyp: dict, hyp_b: dict) -> dict[str, Callable[[dict], Callable[[], object]]]:
    """name -> (functions -> a callable that does the work with them)."""
    utts = sorted(ref)

    def total(fn):
        c = ErrorCounts()
        for u in utts:
            c += fn(ref[u], hyp.get(u, ""))
        return c

    def patched(funcs, module, call):
        def run():
            with mock.patch.multiple(module, **funcs):
                return call()
        return run

    return {
        "WER: word counts of every utterance": lambda f: lambda: total(f["word_counts"]),
        "CER: character counts of every utterance": lambda f: lambda: total(f["char_counts"]),
        "score_set (WER + CER + families)": lambda f: patched(f, score, lambda: score.score_set(ref, hyp, {})),
        "paired_bootstrap, 1000 resamples": lambda f: patched(
            {"word_counts": f["word_counts"]}, wer, lambda: wer.paired_bootstrap(ref, hyp, hyp_b)),
    }


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ref", type=Path, default=ROOT / "base/dump/raw/test/text")
    p.add_argument("--hyp", type=Path, default=ROOT / DECODES / "decode_decode_ctc_valid.loss.ave/test/text")
    p.add_argument("--hyp_b", type=Path,
                   default=ROOT / DECODES / "decode_decode_ctc_lm_valid.loss.ave_lm_char/test/text")
    p.add_argument("--synthetic", action="store_true", help="the synthetic set even if the real files are there")
    p.add_argument("--replicate", type=int, default=10)
    p.add_argument("--old_repeats", type=int, default=3)
    p.add_argument("--new_repeats", type=int, default=21)
    p.add_argument("--out_dir", type=Path, default=ROOT / "bench" / "results")
    return p


def main(cmd=None) -> None:
    args = get_parser().parse_args(cmd)
    argv = sys.argv[1:] if cmd is None else cmd
    load_before = os.getloadavg()
    start = time.perf_counter()
    real = not args.synthetic and all(Path(p).is_file() for p in (args.ref, args.hyp, args.hyp_b))
    if real:
        ref, hyp, hyp_b = (read_kv(Path(p)) for p in (args.ref, args.hyp, args.hyp_b))
        data = {"kind": "real decode", "ref": rel(args.ref), "hyp": rel(args.hyp), "hyp_b": rel(args.hyp_b)}
    else:
        ref, hyp, hyp_b = synthetic()
        data = {"kind": "synthetic (200 utterances x 10 words, ~30% / ~20% WER)"}
    data.update(utts=len(ref), ref_words=sum(len(r.split()) for r in ref.values()),
                ref_chars=sum(len(" ".join(r.split())) for r in ref.values()))

    # identical results first: every utterance, and the bootstrap
    old_rows = per_utt(OLD, ref, hyp) + per_utt(OLD, ref, hyp_b)
    new_rows = per_utt(NEW, ref, hyp) + per_utt(NEW, ref, hyp_b)
    boot_old = tasks(ref, hyp, hyp_b)["paired_bootstrap, 1000 resamples"](OLD)()
    boot_new = wer.paired_bootstrap(ref, hyp, hyp_b)
    jw = jiwer_word_splits(ref, hyp) + jiwer_word_splits(ref, hyp_b)
    check = {
        "utterance_pairs": len(new_rows),
        "identical_word_counts": sum(o[0] == n[0] for o, n in zip(old_rows, new_rows)),
        "identical_char_counts": sum(o[1] == n[1] for o, n in zip(old_rows, new_rows)),
        "identical_bootstrap": boot_old == boot_new,
        "bootstrap": boot_new,
        "jiwer_process_words_other_split": sum(j != o[0][:3] for j, o in zip(jw, old_rows)),
        "jiwer_process_words_same_errors": all(sum(j) == sum(o[0][:3]) for j, o in zip(jw, old_rows)),
    }
    if not (check["identical_word_counts"] == check["identical_char_counts"] == len(new_rows)
            and check["identical_bootstrap"]):
        sys.exit(f"scoring bench: old and new results differ: {check}")

    rows = []
    for label, times in (("test set", 1), (f"test set x {args.replicate}", args.replicate)):
        r, h, hb = replicate(ref, times), replicate(hyp, times), replicate(hyp_b, times)
        for name, make in tasks(r, h, hb).items():
            old = cpu_ms(make(OLD), args.old_repeats)
            new = cpu_ms(make(NEW), args.new_repeats)
            rows.append({"data": label, "utts": len(r), "task": name, "old_ms": old, "new_ms": new,
                         "speedup": old / new})
            print(f"{label}: {name}: old {old:.1f} ms, new {new:.2f} ms, {old / new:.0f}x", flush=True)

    wer_row = rows[0]
    res = {
        "command": rel_text("PYTHONPATH=. .venv/bin/python bench/scoring.py" + "".join(f" {a}" for a in argv)),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(), "cpus": os.cpu_count(), "python": platform.python_version(),
        "rapidfuzz": version("rapidfuzz"), "jiwer": version("jiwer"),
        "data": data, "check": check, "old_repeats": args.old_repeats, "new_repeats": args.new_repeats,
        "rows": rows, "target_speedup": TARGET, "wer_test_set_speedup": wer_row["speedup"],
        "target_met": wer_row["speedup"] >= TARGET,
        "seconds": time.perf_counter() - start, "load_before": load_before, "load_after": os.getloadavg(),
    }
    src = (f"`{data['hyp']}` (system A) and `{data['hyp_b']}` (system B, bootstrap only) against `{data['ref']}`"
           if real else data["kind"])
    md = [
        "# WER/CER scoring: pure-Python alignment vs RapidFuzz (bench/scoring.py)",
        "",
        f"Command: `{res['command']}`; {res['date']}; {res['cpu']}, {res['cpus']} CPUs; Python {res['python']}, "
        f"RapidFuzz {res['rapidfuzz']}; {res['seconds']:.0f} s; 1/5/15-min load average "
        f"{', '.join(f'{x:.2f}' for x in load_before)} before, "
        f"{', '.join(f'{x:.2f}' for x in res['load_after'])} after.",
        "",
        f"Data: {src}: {data['utts']} utterances, {data['ref_words']} reference words, "
        f"{data['ref_chars']} reference characters.",
        "",
        f"Same results: per-utterance (sub, del, ins, ref length) identical for {check['identical_word_counts']}/"
        f"{check['utterance_pairs']} utterance-system pairs at word level and {check['identical_char_counts']}/"
        f"{check['utterance_pairs']} at character level; paired bootstrap result identical: "
        f"{check['identical_bootstrap']}. (jiwer's `process_words` has the same error totals but splits "
        f"{check['jiwer_process_words_other_split']} of the {check['utterance_pairs']} differently: it keeps "
        "another minimal alignment than the one with the most substitutions.)",
        "",
        f"CPU ms of this process, median of {args.old_repeats} (old) / {args.new_repeats} (new) runs.",
        "",
        "| data | utterances | task | old ms | new ms | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    md += [f"| {r['data']} | {r['utts']} | {r['task']} | {r['old_ms']:.1f} | {r['new_ms']:.2f} "
           f"| {r['speedup']:.0f}x |" for r in rows]
    md += ["", "`paired_bootstrap` aligns each utterance once per system, then each resample only sums "
           "those counts; what is left of its time is that pure-Python resampling (Python's `random`, kept so "
           "that the intervals stay the same for a seed).",
           "", f"Target: WER scoring of the test set >= {TARGET:.0f}x faster: "
           f"{'met' if res['target_met'] else 'NOT met'} ({wer_row['speedup']:.0f}x)."]
    write_results(args.out_dir, "scoring", res, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
