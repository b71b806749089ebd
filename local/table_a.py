#!/usr/bin/env python3
"""Table A (omni-sparsity) from the recipe's own outputs.

Usage (run.sh stage 13 calls it):
  python local/table_a.py --dense exp/asr_ctc --omni exp/asr_ctc_omni \
      --prune exp/asr_ctc_prune0.5 exp/asr_ctc_prune0.7 --targets 0.5 0.7 \
      --decode decode_decode_ctc_valid.loss.ave --sets dev test real \
      --results_file RESULTS.md --plot exp/table_a.png --command "./run.sh --stage 8 --stop_stage 13"

Reads, per target sparsity s:
  <prune_s>/export/export.json                 size of the individually pruned model
  <prune_s>/export/<decode>/scores.json        its WER per set
  <omni>/export_<s>/export.json, .../scores.json   the sub-network found under that size
  <dense>/compute.json, <prune_s>/compute.json, <omni>/compute.json   training CPU seconds
Writes: the `table_a` section of --results_file, and --plot (WER vs non-zero parameters).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from espnet_omni.scoring.results_file import replace_section  # noqa: E402


def load(path: Path) -> dict:
    if not path.is_file():
        raise SystemExit(f"table_a: missing {path} (run the stage that writes it first)")
    return json.loads(path.read_text())


def wer(scores: dict, s: str) -> float:
    return 100 * scores["scores"][s]["words"]["wer"] if s in scores["scores"] else float("nan")


def cpu(exp: Path) -> float:
    return load(exp / "compute.json")["train_cpu_seconds"]


def rows(args) -> list[dict]:
    out = []
    for s, prune in zip(args.targets, args.prune):
        ind, sub = Path(prune) / "export", Path(args.omni) / f"export_{s}"
        out.append({
            "target": s,
            "ind": load(ind / "export.json"), "ind_scores": load(ind / args.decode / "scores.json"),
            "sub": load(sub / "export.json"), "sub_scores": load(sub / args.decode / "scores.json"),
            "ind_cpu": cpu(Path(prune)),
        })
    return out


def render(args, table: list[dict]) -> str:
    dense_scores = load(Path(args.dense) / args.decode / "scores.json")
    sets = args.sets
    head = "| sparsity | model | non-zero params | bytes on disk | " + " | ".join(f"{s} WER %" for s in sets) + " |"
    lines = [
        "### Table A: omni-sparsity supernet vs individually pruned models",
        "",
        f"Written by `local/table_a.py` from the recipe's outputs; command: `{args.command}`.",
        "(a) = gradual magnitude pruning of the dense model to that sparsity, alone;",
        "(b) = the sub-network found by evolutionary search in the one supernet under (a)'s size.",
        "",
        head,
        "|" + "---|" * (4 + len(sets)),
        "| 0 | dense | - | - | " + " | ".join(f"{wer(dense_scores, s):.1f}" for s in sets) + " |",
    ]
    for r in table:
        for name, key in (("(a) individual", "ind"), ("(b) omni sub-network", "sub")):
            e, sc = r[key], r[f"{key}_scores"]
            lines.append(
                f"| {r['target']} | {name} | {e['nonzero_params']:,} | {e['model_bytes']:,} | "
                + " | ".join(f"{wer(sc, s):.1f}" for s in sets) + " |"
            )
    ind_total = sum(r["ind_cpu"] for r in table)
    omni_cpu = cpu(Path(args.omni))
    mean_ind = ind_total / max(len(table), 1)
    lines += [
        "",
        "Training compute (CPU core-seconds of finished epochs, from each run's compute.json;"
        " every model starts from the same dense model):",
        "",
        "| what | CPU s |",
        "|---|---|",
        f"| dense model (shared start) | {cpu(Path(args.dense)):.0f} |",
        f"| all {len(table)} individually pruned models | {ind_total:.0f} |",
        f"| one individually pruned model (mean) | {mean_ind:.0f} |",
        f"| the one supernet | {omni_cpu:.0f} ({omni_cpu / mean_ind:.2f}x one individual model) |",
    ]
    test = sets[1] if len(sets) > 1 else sets[0]
    better = [r for r in table if wer(r["sub_scores"], test) <= wer(r["ind_scores"], test)]
    lines += ["", f"On `{test}`, the omni sub-network is at least as good as the individual model at "
              f"{len(better)} of {len(table)} sizes."]
    return "\n".join(lines) + "\n"


def plot(args, table: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    test = args.sets[1] if len(args.sets) > 1 else args.sets[0]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for key, label, marker in (("ind", "individually pruned", "o"), ("sub", "omni sub-network", "s")):
        pts = sorted((r[key]["nonzero_params"], wer(r[f"{key}_scores"], test)) for r in table)
        ax.plot([p for p, _ in pts], [w for _, w in pts], marker=marker, label=label)
    ax.set_xlabel("non-zero encoder parameters")
    ax.set_ylabel(f"{test} WER %")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.plot, dpi=120)


def main(cmd=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dense", required=True)
    p.add_argument("--omni", required=True)
    p.add_argument("--prune", nargs="+", required=True)
    p.add_argument("--targets", nargs="+", required=True)
    p.add_argument("--decode", required=True)
    p.add_argument("--sets", nargs="+", required=True)
    p.add_argument("--results_file", type=Path, required=True)
    p.add_argument("--plot", type=Path, required=True)
    p.add_argument("--command", default="")
    args = p.parse_args(cmd)
    if len(args.prune) != len(args.targets):
        raise SystemExit(f"table_a: {len(args.prune)} --prune dirs but {len(args.targets)} --targets")
    table = rows(args)
    replace_section(args.results_file, "table_a", render(args, table))
    plot(args, table)
    print(f"table_a: wrote {args.results_file} (section table_a) and {args.plot}")


if __name__ == "__main__":
    main()
