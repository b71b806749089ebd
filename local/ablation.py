#!/usr/bin/env python3
"""The accuracy ablation table: each lever alone, then combined, from the recipe's outputs.

Usage (local/run_ablation.sh calls it):
  python local/ablation.py --dump dump/raw --sets dev test test_seen real \
      --row "old data, CTC greedy=../abl/base/exp/asr_base/decode_ctc_valid.loss.ave" \
      --row "+ voices=exp/asr_voices/decode_ctc_valid.loss.ave" \
      --results_file RESULTS.md --command "local/run_ablation.sh"

Each --row is LABEL=DECODE_DIR, a decode directory of local/score_dense.sh:
  DECODE_DIR/scores.json            WER/CER per set and per voice family (stage 8)
  DECODE_DIR/<set>/text, wall_seconds, logdir/keys.*   hypotheses, decoding time and jobs
  DECODE_DIR/../train.log           epoch wall times (training minutes = median epoch x epochs)
  --dump DIR: <DIR>/<set>/text and utt2num_samples: the references (the evaluation sets are the
  same utterances in every row) and the audio length for the decoding RTF.
Writes: the `ablation` section of --results_file: the table, each row's test WER difference
against the first row with its paired bootstrap 95% interval, and each row's command.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from espnet_omni.scoring import tables  # noqa: E402
from espnet_omni.scoring.results_file import replace_section  # noqa: E402
from espnet_omni.corpus.datadir import read_kv  # noqa: E402
from espnet_omni.scoring.wer import bootstrap_summary, paired_bootstrap  # noqa: E402

WHO = "ablation"


def parse_row(spec: str) -> tuple[str, Path]:
    """``LABEL=DECODE_DIR`` -> (label, path).

    >>> parse_row("+ LM (beam 10)=exp/a/decode_x")
    ('+ LM (beam 10)', PosixPath('exp/a/decode_x'))
    """
    label, sep, path = spec.rpartition("=")
    if not sep or not label.strip() or not path.strip():
        raise SystemExit(f"{WHO}: --row {spec!r}: expected LABEL=DECODE_DIR")
    return label.strip(), Path(path.strip())


def parse_pair(spec: str, by_label: dict) -> tuple[dict, dict]:
    """``LABEL_A::LABEL_B`` -> the two rows (A is compared with B)."""
    a, sep, b = spec.partition("::")
    missing = [x for x in (a, b) if x not in by_label]
    if not sep or missing:
        raise SystemExit(f"{WHO}: --pair {spec!r}: expected LABEL_A::LABEL_B of two --row labels "
                         f"(unknown: {missing}; rows: {sorted(by_label)})")
    return by_label[a], by_label[b]


def row(label: str, decode: Path, args) -> dict:
    scores = tables.load_json(decode / "scores.json", WHO)
    if not any(s in scores["scores"] for s in args.sets):
        raise SystemExit(f"{WHO}: {decode / 'scores.json'} has none of the sets {args.sets}; score them (stage 8)")
    return {
        "label": label,
        "decode": decode,
        "scores": scores["scores"],
        "command": scores.get("command", ""),
        "train_min": tables.median_epochs(decode.parent, WHO) / 60,
        "epochs": len(tables.epoch_seconds(decode.parent, WHO)),
        "rtf": tables.decode_rtf(decode / args.rtf_set, args.dump / args.rtf_set),
    }


def families(r: dict, s: str) -> str:
    fam = r["scores"][s]["families"]
    return " / ".join(f"{100 * fam[f]['wer']:.0f}" for f in sorted(fam))


def render(rows: list[dict], args) -> str:
    sets = args.sets
    head = " | ".join(f"{s} WER / CER" for s in sets)
    fam_head = ""
    if "test" in sets:  # the held-out voices per family: where a lever helps or hurts
        fam_head = f" test WER by family ({' / '.join(sorted(rows[0]['scores']['test']['families']))}) |"
    lines = [
        f"## {args.title}",
        "",
        "Written by `local/ablation.py` from each row's `scores.json` (local/score_dense.sh). WER / CER in %;"
        " dev and test are voices never heard in training, test_seen the training voices on"
        " sentences of no other split, real the 5 LibriVox sentences. Training minutes are the"
        " median epoch wall time x epochs (ESPnet's train.log); RTF is decoding wall time x parallel"
        f" one-thread jobs / audio on `{args.rtf_set}`, model loading included.",
        "",
        f"| row | {head} |{fam_head} epochs | training min | RTF |",
        "|---|" + "---|" * (len(sets) + 3 + bool(fam_head)),
    ]
    for r in rows:
        cells = " | ".join(
            f"{100 * r['scores'][s]['words']['wer']:.1f} / {100 * r['scores'][s]['chars']['cer']:.1f}"
            if s in r["scores"] else "not decoded" for s in sets
        )
        fam = f" {families(r, 'test')} |" if fam_head and "test" in r["scores"] else " |" * bool(fam_head)
        lines.append(f"| {r['label']} | {cells} |{fam} {r['epochs']} | {r['train_min']:.1f} | {r['rtf']:.3f} |")
    if "test" in sets and (len(rows) > 1 or args.pair):
        ref = read_kv(_need(args.dump / "test" / "text"))
        by_label = {r["label"]: r for r in rows}
        pairs = [parse_pair(p, by_label) for p in args.pair] or [(r, rows[0]) for r in rows[1:]]
        lines += ["", "Test WER differences (row A minus row B, points), paired bootstrap over the test"
                  " utterances:", ""]
        for a, b in pairs:
            d = paired_bootstrap(ref, read_kv(_need(a["decode"] / "test" / "text")),
                                 read_kv(_need(b["decode"] / "test" / "text")))
            lines.append(f"- {a['label']} vs {b['label']}: {bootstrap_summary(d)}")
    lines += ["", "Commands (each row's decode directory and the run.sh command that made it):", ""]
    for r in rows:
        lines.append(f"- {r['label']}: `{tables.rel(r['decode'])}`: `{tables.rel_text(r['command'])}`")
    if args.note:
        lines += ["", tables.rel_text(args.note)]
    if args.command:
        lines += ["", f"Table command: `{tables.rel_text(args.command)}`"]
    return "\n".join(lines) + "\n"


def _need(path: Path) -> Path:
    tables.load_text(path, WHO)
    return path


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--row", action="append", required=True, help="LABEL=DECODE_DIR (repeatable)")
    p.add_argument("--dump", type=Path, required=True, help="dump dir with <set>/text, utt2num_samples")
    p.add_argument("--sets", nargs="+", default=["dev", "test", "test_seen", "real"])
    p.add_argument("--rtf_set", default="test")
    p.add_argument("--pair", action="append", default=[],
                   help="LABEL_A::LABEL_B: test WER of A minus B with its bootstrap interval (repeatable; "
                   "default: every row against the first)")
    p.add_argument("--results_file", type=Path, required=True)
    p.add_argument("--section", default="ablation")
    p.add_argument("--title", default="Accuracy ablation: a recognizer that works on unheard voices")
    p.add_argument("--command", default="")
    p.add_argument("--note", default="", help="provenance (machine load, what ran where), printed under the table")
    return p


def main(cmd=None) -> None:
    args = get_parser().parse_args(cmd)
    rows = [row(label, decode, args) for label, decode in map(parse_row, args.row)]
    text = render(rows, args)
    replace_section(args.results_file, args.section, text)
    print(text)


if __name__ == "__main__":
    main()
