"""Score decoded test sets and write the results of one experiment.

Usage:
  python -m espnet_omni.scoring.score --exp exp/asr_ctc --decode decode_ctc_valid.loss.ave \
      --dump dump/raw --sets dev test real --results_file RESULTS.md \
      --command "./run.sh" --config conf/train_asr_ctc.yaml

Reads  <dump>/<set>/text (references), <dump>/<set>/utt2family (optional: voice family
       of each utterance), <exp>/<decode>/<set>/text (hypotheses).
Writes <exp>/<decode>/scores.json (every number below, machine-readable),
       <exp>/<decode>/RESULTS.md, and the section of --results_file between the markers
       `<!-- BEGIN <exp name>/<decode> -->` and `<!-- END ... -->` (other sections are kept).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import platform
import sys
from dataclasses import asdict
from pathlib import Path

from espnet_omni.corpus.datadir import read_kv
from espnet_omni.scoring.results_file import replace_section
from espnet_omni.scoring.tables import rel_text
from espnet_omni.scoring.wer import ErrorCounts, char_counts, word_counts


def score_set(ref: dict[str, str], hyp: dict[str, str], family: dict[str, str]) -> dict:
    """Totals and per-family counts of one test set; missing hypotheses count as empty."""
    words, chars = ErrorCounts(), ErrorCounts()
    fam_words: dict[str, ErrorCounts] = {}
    missing = sorted(set(ref) - set(hyp))
    if missing:
        logging.warning("%d utterances have no hypothesis (scored as empty), e.g. %s", len(missing), missing[:3])
    examples = []
    for utt in sorted(ref):
        w = word_counts(ref[utt], hyp.get(utt, ""))
        words += w
        chars += char_counts(ref[utt], hyp.get(utt, ""))
        fam = family.get(utt, "all")
        fam_words[fam] = fam_words.get(fam, ErrorCounts()) + w
        if len(examples) < 3:
            examples.append({"utt": utt, "ref": ref[utt], "hyp": hyp.get(utt, "")})
    return {
        "words": asdict(words) | {"wer": words.rate},
        "chars": asdict(chars) | {"cer": chars.rate},
        "families": {k: asdict(v) | {"wer": v.rate} for k, v in sorted(fam_words.items())},
        "missing_hyps": len(missing),
        "examples": examples,
    }


def training_facts(exp: Path) -> dict:
    """What the experiment directory says about the training run (best effort)."""
    facts: dict = {}
    wall = exp / "train.wall_seconds"
    if wall.exists():
        facts["train_wall_seconds"] = sum(int(x) for x in wall.read_text().split())
    compute = exp / "compute.json"
    if compute.exists():
        facts.update(json.loads(compute.read_text()))
    log = exp / "train.log"
    if log.exists():
        epochs = [ln for ln in log.read_text(errors="replace").splitlines() if "epoch results:" in ln]
        facts["epochs_logged"] = len(epochs)
        if epochs:
            facts["last_epoch_results"] = epochs[-1].split("epoch results:", 1)[1].strip()
    return facts


def render(name: str, scores: dict, facts: dict, args: argparse.Namespace) -> str:
    """Markdown section for one experiment (paths relative to the repository root)."""
    lines = [
        f"### {name}",
        "",
        f"Written by `python -m espnet_omni.scoring.score` on {datetime.date.today()} "
        f"({platform.machine()}, {platform.node() and 'host ' + platform.node()}).",
        "",
        f"- command: `{rel_text(args.command)}`",
        f"- training config: `{rel_text(args.config)}`; decoding config: `{rel_text(args.inference_config)}`",
    ]
    if "train_wall_seconds" in facts:
        lines.append(f"- training wall time: {facts['train_wall_seconds'] / 60:.1f} min")
    if "epochs_logged" in facts:
        lines.append(f"- epochs: {facts['epochs_logged']}; last: {facts.get('last_epoch_results', '')}")
    lines += ["", "| set | utts | words | WER % | CER % | sub/del/ins (words) |", "|---|---|---|---|---|---|"]
    for s, r in scores.items():
        w, c = r["words"], r["chars"]
        lines.append(
            f"| {s} | {w['n_utts']} | {w['ref_len']} | {100 * w['wer']:.1f} | {100 * c['cer']:.1f} "
            f"| {w['sub']}/{w['dele']}/{w['ins']} |"
        )
    lines += ["", "WER % by voice family:", "", "| set | family | utts | WER % |", "|---|---|---|---|"]
    for s, r in scores.items():
        for fam, v in r["families"].items():
            lines.append(f"| {s} | {fam} | {v['n_utts']} | {100 * v['wer']:.1f} |")
    first = next(iter(scores.values()), None)
    if first and first["examples"]:
        lines += ["", "Examples:", ""]
        for ex in first["examples"]:
            lines += [f"- `{ex['utt']}`", f"  - ref: {ex['ref']}", f"  - hyp: {ex['hyp']}"]
    cfg = Path(args.config) if args.config else None
    if cfg and cfg.exists():
        lines += ["", "<details><summary>training config</summary>", "", "```yaml",
                  cfg.read_text().rstrip(), "```", "", "</details>"]
    return "\n".join(lines) + "\n"


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp", type=Path, required=True, help="experiment directory")
    p.add_argument("--decode", required=True, help="decode directory name inside --exp")
    p.add_argument("--dump", type=Path, required=True, help="directory holding <set>/text")
    p.add_argument("--sets", nargs="+", required=True)
    p.add_argument("--results_file", type=Path, default=None)
    p.add_argument("--command", default="", help="the command that produced the experiment")
    p.add_argument("--config", default="")
    p.add_argument("--inference_config", default="")
    return p


def main(cmd=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (score) %(levelname)s: %(message)s")
    args = get_parser().parse_args(cmd)
    decode = args.exp / args.decode
    scores = {}
    for s in args.sets:
        for path in (args.dump / s / "text", decode / s / "text"):
            if not path.exists():
                sys.exit(f"score: missing {path} (run the decoding stage for set {s!r} first)")
        fam_file = args.dump / s / "utt2family"
        family = read_kv(fam_file) if fam_file.exists() else {}
        scores[s] = score_set(read_kv(args.dump / s / "text"), read_kv(decode / s / "text"), family)
        logging.info("%s: WER %.2f%% CER %.2f%%", s, 100 * scores[s]["words"]["wer"], 100 * scores[s]["chars"]["cer"])
    facts = training_facts(args.exp)
    (decode / "scores.json").write_text(json.dumps({"scores": scores, "training": facts, "command": args.command}, indent=1))
    name = f"{args.exp.name}/{args.decode}"
    section = render(name, scores, facts, args)
    (decode / "RESULTS.md").write_text(section)
    if args.results_file:
        replace_section(args.results_file, name, section)
        logging.info("wrote section %s of %s", name, args.results_file)


if __name__ == "__main__":
    main()
