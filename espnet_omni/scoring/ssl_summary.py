"""Does wav2vec 2.0 pretraining learn? The summary of one or more SSL experiments.

Usage (local/run_table_b.sh stage 1 runs it when its pretrainings finish)::

    python -m espnet_omni.scoring.ssl_summary exp/ssl_w2v exp/ssl_w2v_dual \\
        --results_file RESULTS.md --command "local/run_table_b.sh --stage 1"

Reads, per experiment P: ``P/train.log`` (ESPnet's "Nepoch results" lines: train and
valid contrastive accuracy and code perplexity, per mode for a dual-mode pretraining),
``P/config.yaml`` (distractors, codebook groups and entries, ngpu), ``P/compute.json``
and ``P/pretrain_audio.json`` (the audio it saw). Writes the section
``ssl_pretraining`` of ``--results_file``; Table B (``local/table_b.py``) shows the
same rows under its table for the pretrainings of its rows 4 and 5.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from espnet_omni.scoring import tables
from espnet_omni.scoring.results_file import replace_section

WHO = "ssl_summary"
EPOCH_RE = re.compile(r"(\d+)epoch results: \[train\] (.*?), \[valid\] (.*?)(?:, \[att_plot\]|$)", re.M)


def epochs(log: Path) -> list[dict]:
    """``[{"epoch": n, "train": {key: value}, "valid": {key: value}}]`` from ESPnet's "Nepoch
    results" log lines."""
    out = []
    for m in EPOCH_RE.finditer(tables.load_text(log, WHO)):
        parts = []
        for group in (m.group(2), m.group(3)):
            values = {}
            for kv in group.split(", "):
                k, _, v = kv.partition("=")
                try:
                    values[k] = float(v)
                except ValueError:
                    pass
            parts.append(values)
        out.append({"epoch": int(m.group(1)), "train": parts[0], "valid": parts[1]})
    return out


def _pair(a: dict, b: dict, key: str, fmt: str) -> str:
    """``a[key] -> b[key]`` (first -> last epoch), or n/a where the log lacks the key."""
    return f"{a[key]:{fmt}} -> {b[key]:{fmt}}" if key in a and key in b else "n/a"


def pretraining_audio(exp: Path) -> str:
    """The audio a pretraining saw, from its ``pretrain_audio.json`` (local/run_table_b.sh stage 1
    writes it: hours and utterances per data set); runs made before it: not recorded."""
    f = Path(exp) / "pretrain_audio.json"
    if not f.is_file():
        return "not recorded"
    sets = json.loads(f.read_text())["sets"]
    return " + ".join(f"{x['hours']:.2f} h `{x['name']}` ({x['utts']} utts)" for x in sets)


def pretraining_summary(dirs: list[Path]) -> list[str]:
    """Train and valid contrastive accuracy vs chance, code perplexity (per mode), compute, audio."""
    lines = ["wav2vec 2.0 pretraining (first and last epoch; accuracy = the true target scores above all "
             "distractors on the masked frames, chance = 1 / (1 + distractors); code perplexity of the hard "
             "codes, summed over the codebook groups: from groups (one code per group: collapse) to "
             "groups x entries):", "",
             "| pretraining | mode | epochs | train accuracy first -> last | valid accuracy first -> last | chance "
             "| train code perplexity first -> last | valid code perplexity first -> last | compute "
             "| pretraining audio |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for p in map(Path, dirs):
        conf = tables.load_yaml(p / "config.yaml", WHO)
        w2v = next(x for x in conf["loss"] if x["name"] == "wav2vec2").get("conf", {})
        k, g, v = w2v.get("num_negatives", 100), w2v.get("codebook_groups", 2), w2v.get("codebook_entries", 320)
        ep = epochs(p / "train.log")
        if not ep:
            raise SystemExit(f"{WHO}: no epoch results in {p / 'train.log'}")
        first, last = ep[0]["valid"], ep[-1]["valid"]
        tfirst, tlast = ep[0]["train"], ep[-1]["train"]
        suffixes = sorted({key[len("w2v_acc"):] for key in last if key.startswith("w2v_acc")})
        for suf in [x for x in suffixes if x] or [""]:
            mode = {"": "dense full-context", "_full": "dense full-context"}.get(
                suf, f"streaming, sparsity {suf.rsplit('_s', 1)[-1]}%" if "_s" in suf else suf.lstrip("_"))
            tsuf = "_stream" if suf.startswith("_stream") else suf  # train keys carry no sparsity
            lines.append(
                f"| `{p.name}` | {mode} | {ep[-1]['epoch']} | {_pair(tfirst, tlast, 'w2v_acc' + tsuf, '.3f')} | "
                f"{_pair(first, last, 'w2v_acc' + suf, '.3f')} | {1 / (1 + k):.3f} | "
                f"{_pair(tfirst, tlast, 'w2v_code_ppl' + tsuf, '.1f')} | "
                f"{_pair(first, last, 'w2v_code_ppl' + suf, '.1f')} (range {g}..{g * v}) | "
                f"{tables.compute_str(p, WHO)} | {pretraining_audio(p)} |")
    return lines


def main(cmd=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="SSL experiment directories")
    p.add_argument("--results_file", type=Path, required=True)
    p.add_argument("--command", default="", help="the command that made them (shown with the section)")
    p.add_argument("--note", default="", help="provenance, written under the heading")
    args = p.parse_args(cmd)
    body = "\n".join([
        "### wav2vec 2.0 pretraining", "",
        *([tables.rel_text(args.note), ""] if args.note else []),
        f"Written by `python -m espnet_omni.scoring.ssl_summary` from the pretraining logs; command: "
        f"`{tables.rel_text(args.command)}`.", "",
        *pretraining_summary(args.dirs)]) + "\n"
    replace_section(args.results_file, "ssl_pretraining", body)
    print(f"{WHO}: wrote {args.results_file} (section ssl_pretraining)")


if __name__ == "__main__":
    main()
