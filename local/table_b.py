#!/usr/bin/env python3
"""Table B (dual mode) from the recipe's own outputs.

Usage (local/run_table_b.sh stage 4 calls it):
  python local/table_b.py --rows 1 2 3 \
      --exps exp/asr_ctc exp/asr_ctc_stream exp/asr_ctc_dual \
      --decode decode_decode_ctc_valid.loss.ave --sets dev test real \
      --results_file RESULTS.md --command "local/run_table_b.sh --stage 2"

Reads, per row (experiment directory E, local/run_table_b.sh stage 3's outputs in E/table_b/):
  E/table_b/export_full/export.json, .../<decode>/scores.json   the full-context network
  E/table_b/export_stream/export.json                          the streaming network's size
  E/table_b/stream/scores.json, E/table_b/stream/<set>/latency.json   streaming WER (chunk by chunk,
                                                               greedy), RTF
  E/table_b/export_stream/<decode>/scores.json                 streaming WER with the inference
                                                               config (and LM), when decoded
  E/compute.json, E/config.yaml (ngpu)                         training compute: CPU seconds, or
                                                               GPU wall seconds for a GPU-trained row
  P/train.log, P/compute.json (--pretrain N=P, rows 4-5)       wav2vec 2.0 pretraining: per-epoch
                                                               valid accuracy, code perplexity
Writes: the `table_b` section of --results_file.

The pretraining summary under the table is espnet_omni.scoring.ssl_summary's (which
local/run_table_b.sh stage 1 also runs alone, into the section `ssl_pretraining`).

Paths in the sections (the command, the configs) are relative to the repository root;
--note (provenance) goes under the heading.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from espnet_omni.scoring import tables  # noqa: E402
from espnet_omni.scoring.ssl_summary import pretraining_summary  # noqa: E402
from espnet_omni.scoring.results_file import replace_section  # noqa: E402

ROW_NAMES = {
    "1": "(1) dense full-context model alone",
    "2": "(2) sparse streaming model alone",
    "3": "(3) dual-mode supernet, random init",
    "4": "(4) dual-mode supernet, fine-tuned from plain wav2vec 2.0",
    "5": "(5) dual-mode supernet, fine-tuned from dual-mode wav2vec 2.0",
}


def load(path: Path) -> dict:
    return tables.load_json(path, "table_b")


wer = tables.wer_percent


def row(args, r: str, exp: Path) -> dict:
    t = exp / "table_b"
    rtf_set = args.rtf_set if args.rtf_set in args.sets else args.sets[0]
    return {
        "row": r, "exp": exp,
        "full": load(t / "export_full" / "export.json"),
        "full_scores": load(t / "export_full" / args.decode / "scores.json"),
        "stream": load(t / "export_stream" / "export.json"),
        "stream_scores": load(t / "stream" / "scores.json"),
        # the streaming network through the recipe's search and LM (rows evaluated before
        # dual_mode_eval --stream_search have none)
        "stream_search_scores": (load(t / "export_stream" / args.decode / "scores.json")
                                 if (t / "export_stream" / args.decode / "scores.json").is_file() else None),
        "latency": load(t / "stream" / rtf_set / "latency.json"),
        "pretrain": args.pretrain.get(r),
    }


TORCH_RE = re.compile(r"pytorch\.version=([^,\s]+), cuda\.available=(\w+)")
CONFIG_RE = re.compile(r"--config (\S+)")


def provenance(exp: Path) -> str:
    """How ``exp`` was trained, from its own files: the config given to the trainer (train.log's
    command line), ngpu (config.yaml), PyTorch build and CUDA availability (train.log)."""
    log = (exp / "train.log").read_text(errors="replace") if (exp / "train.log").is_file() else ""
    config = CONFIG_RE.search(log)
    torch_ = TORCH_RE.search(log)
    return (f"`{exp.name}`: config `{tables.rel_text(config.group(1)) if config else '?'}`, ngpu {tables.ngpu(exp)}"
            + (f", PyTorch {torch_.group(1)} (CUDA available: {torch_.group(2)})" if torch_ else ""))


def _size(e: dict) -> str:
    return f"{e['nonzero_params'] / 1e6:.2f} M / {e['model_bytes'] / 1e6:.2f} MB"


def render(args, table: list[dict]) -> str:
    sets = args.sets
    rtf_set = args.rtf_set if args.rtf_set in sets else sets[0]
    searched = all(t["stream_search_scores"] for t in table)
    head = ("| row | streaming WER % (" + " / ".join(sets) + ") | "
            + ("streaming WER %, decoded like full-context (" + " / ".join(sets) + ") | " if searched else "")
            + "full-context WER % (" + " / ".join(sets)
            + ") | streaming model: non-zero params / file | full-context model: non-zero params / file"
            + f" | streaming RTF ({rtf_set}, 1 thread) | training compute |")
    lines = [
        "### Table B: dual mode (fine-tuning rows)" + ("" if args.section == "table_b" else f" ({args.section})"),
        "",
        *([tables.rel_text(args.note), ""] if args.note else []),
        f"Written by `local/table_b.py` from the recipe's outputs; command: `{tables.rel_text(args.command)}`.",
        "Both modes by `espnet_omni.bin.dual_mode_eval` (local/run_table_b.sh stage 3): streaming = the row's streaming",
        "network decoded chunk by chunk on one thread (cached attention keys/values and conv state, CTC",
        "greedy); full-context = the row's full-context network exported and decoded by ESPnet's Speech2Text",
        "with the recipe's inference config" + (" (`" + tables.rel_text(args.decode_config) + "`)" if args.decode_config else "")
        + (", and so is the streaming network in the column \"decoded like full-context\" (its encoder in"
           " streaming mode: the chunk-by-chunk encoder output, then the same search and LM; the main job's"
           " streaming WER)" if searched else "") + ". Sizes: the exported models (encoder + CTC head).",
        "Training compute: CPU core-seconds, or GPU wall seconds for a row trained on a GPU (`ngpu` in",
        "its config.yaml); decoding and RTF always on this machine's CPU.",
        "",
        head,
        "|---" * (8 if searched else 7) + "|",
    ]
    for t in table:
        lat = t["latency"]
        lines.append(
            f"| {ROW_NAMES.get(t['row'], t['row'])} | "
            + " / ".join(f"{wer(t['stream_scores'], s):.1f}" for s in sets) + " | "
            + (" / ".join(f"{wer(t['stream_search_scores'], s):.1f}" for s in sets) + " | " if searched else "")
            + " / ".join(f"{wer(t['full_scores'], s):.1f}" for s in sets) + " | "
            + f"{_size(t['stream'])} | {_size(t['full'])} | {lat['rtf']:.3f} | "
            + tables.compute_str(t["exp"])
            + (f" + {tables.compute_str(t['pretrain'])} pretraining" if t["pretrain"] else "") + " |"
        )
    lat = table[0]["latency"]
    lines += [
        "",
        f"Streaming: chunk {lat['streaming']['chunk_size']} encoder frames, left chunks "
        f"{lat['streaming']['left_chunks']}, look-ahead {lat['streaming']['lookahead']} frames; algorithmic "
        f"latency {lat['algorithmic_latency_ms']:.0f} ms (chunk + look-ahead + front-end context); mean / max "
        f"compute per chunk of row {table[0]['row']}: {lat['chunk_compute_ms_mean']:.1f} / "
        f"{lat['chunk_compute_ms_max']:.1f} ms.",
    ]
    lines += ["", "Trained as (from each run's train.log and config.yaml): "
              + "; ".join(provenance(t["exp"]) for t in table) + "."]
    claims = [line for test in tables.verdict_sets(sets) for line in verdicts(table, test, args.dump, args.decode)]
    if claims:
        lines += ["", *claims]
        if args.dump is not None:  # once, under the claims of every set
            lines += ["", "Differences: WER points of the first system minus the second on the same utterances; "
                      "95% interval from 1000 paired bootstrap resamples of the utterances (Bisani & Ney, 2004). "
                      "A claim whose interval contains 0 is not shown either way by this test set."]
    lines += pretraining(table)
    return "\n".join(lines) + "\n"


def pretraining(table: list[dict]) -> list[str]:
    """The pretraining summary of the rows fine-tuned from wav2vec 2.0."""
    dirs = [t["pretrain"] for t in table if t["pretrain"]]
    return ["", *pretraining_summary(dirs)] if dirs else []


def hyp_file(r: dict, mode: str, decode: str, test: str) -> Path:
    t = r["exp"] / "table_b"
    return {"full": t / "export_full" / decode, "stream_search": t / "export_stream" / decode,
            "stream": t / "stream"}[mode] / test / "text"


MODE_NAMES = {"full": "full-context", "stream": "sparse streaming (chunk by chunk, greedy)",
              "stream_search": "sparse streaming (decoded like full-context)"}


def verdicts(table: list[dict], test: str, dump: Optional[Path] = None, decode: str = "") -> list[str]:
    """The lines of claims C3 and C4 on ``test`` for the rows present (with their paired bootstrap
    interval when ``dump`` has the references)."""
    by = {t["row"]: t for t in table}
    checks = [
        ("C3", "full", "3", "1", "dual-mode supernet", "dense model alone", "<="),
        ("C3", "stream", "3", "2", "dual-mode supernet", "streaming model alone", "<="),
        # C4: pretraining (rows 4, 5) vs random init (row 3), and supernet vs plain pretraining
        ("C4", "full", "4", "3", "fine-tuned from plain wav2vec 2.0", "random init", "<"),
        ("C4", "stream", "4", "3", "fine-tuned from plain wav2vec 2.0", "random init", "<"),
        ("C4", "full", "5", "3", "fine-tuned from dual-mode wav2vec 2.0", "random init", "<"),
        ("C4", "stream", "5", "3", "fine-tuned from dual-mode wav2vec 2.0", "random init", "<"),
        ("C4", "stream", "5", "4", "dual-mode pretraining", "plain pretraining", "<="),
    ]
    if all(t["stream_search_scores"] for t in table):  # each streaming claim also with the search
        checks = [c for check in checks
                  for c in ([check, (check[0], "stream_search", *check[2:])] if check[1] == "stream" else [check])]
    out = []
    for claim, mode, ra, rb, what_a, what_b, rule in checks:
        if ra not in by or rb not in by:
            continue
        a, b = wer(by[ra][f"{mode}_scores"], test), wer(by[rb][f"{mode}_scores"], test)
        ok = a <= b if rule == "<=" else a < b
        verdict = ("holds" if ok else "does not hold") if rule == "<=" else ("lower" if ok else "not lower")
        name = MODE_NAMES[mode]
        sig = ""
        if dump is not None:
            sig = " (" + tables.significance(dump / test / "text", hyp_file(by[ra], mode, decode, test),
                                             hyp_file(by[rb], mode, decode, test), "table_b") + ")"
        out.append(f"- {claim}, {name} mode on `{test}`: {what_a} {a:.1f}% vs {what_b} {b:.1f}%: {verdict}{sig}.")
    return out


def main(cmd=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", nargs="+", default=[])
    p.add_argument("--exps", nargs="+", default=[], type=Path)
    p.add_argument("--decode")
    p.add_argument("--decode_config", default="", help="the inference config of --decode (named in the text)")
    p.add_argument("--sets", nargs="+")
    p.add_argument("--rtf_set", default="test", help="the set whose streaming RTF is shown")
    p.add_argument("--dump", type=Path, default=None,
                   help="dump dir with <set>/text references: adds a paired bootstrap interval to each claim")
    p.add_argument("--pretrain", nargs="*", default=[], metavar="ROW=DIR",
                   help="the wav2vec 2.0 pretraining experiment of a row (rows 4, 5)")
    p.add_argument("--results_file", type=Path, required=True)
    p.add_argument("--section", default="table_b",
                   help="the section written (another dual-mode config beside the first: table_b_<its tag>)")
    p.add_argument("--command", default="")
    p.add_argument("--note", default="",
                   help="provenance (machine load, what ran where, what was moved), written under the heading")
    args = p.parse_args(cmd)
    if not args.rows or not args.decode or not args.sets:
        raise SystemExit("table_b: --rows, --exps, --decode and --sets are required")
    pre = {}
    for item in args.pretrain:
        row_, sep, d = item.partition("=")
        if not sep or not d:
            raise SystemExit(f"table_b: --pretrain {item!r}: expected ROW=DIR")
        pre[row_] = Path(d)
    args.pretrain = pre
    if len(args.rows) != len(args.exps):
        raise SystemExit(f"table_b: {len(args.rows)} --rows but {len(args.exps)} --exps")
    table = [row(args, r, e) for r, e in zip(args.rows, args.exps)]
    replace_section(args.results_file, args.section, render(args, table))
    print(f"table_b: wrote {args.results_file} (section {args.section})")


if __name__ == "__main__":
    main()
