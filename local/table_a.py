#!/usr/bin/env python3
"""Table A (omni-sparsity) from the recipe's own outputs.

Usage (local/run_table_a.sh stage 7 calls it):
  python local/table_a.py --dense exp/asr_ctc --omni exp/asr_ctc_omni \
      --prune exp/asr_ctc_prune0.5 exp/asr_ctc_prune0.7 --targets 0.5 0.7 \
      --decode decode_decode_ctc_valid.loss.ave --sets dev test real \
      --results_file RESULTS.md --plot exp/table_a.png --command "local/run_table_a.sh" \
      --dump dump/raw

Reads, per target sparsity s:
  <prune_s>/export/export.json                 size of the individually pruned model
  <prune_s>/export/<decode>/scores.json        its WER per set
  <omni>/export_<s>/export.json, .../scores.json   the sub-network found under that size
  <dense>/compute.json, <prune_s>/compute.json, <omni>/compute.json   training CPU seconds
  --dump DIR: <DIR>/<test set>/text, the references of C1's paired bootstrap per size
  --also LABEL=DIR: another supernet run (e.g. an earlier config kept aside), read like --omni
  and shown beside it, so what was tried stays in the table.
Writes: the `table_a` section of --results_file, and --plot (WER vs non-zero parameters).
Paths in the section (the command, the supernets, the calibration data) are relative to the
repository root; --note (provenance) goes under the heading.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from espnet_omni.scoring import tables  # noqa: E402
from espnet_omni.scoring.results_file import replace_section  # noqa: E402


def load_text(path: Path) -> str:
    return tables.load_text(path, "table_a")


def load(path: Path) -> dict:
    return tables.load_json(path, "table_a")


def median_epochs(exp: Path) -> float:
    return tables.median_epochs(exp, "table_a")


wer = tables.wer_percent


def cpu(exp: Path) -> float:
    return load(exp / "compute.json")["train_cpu_seconds"]


def passes(exp: Path, one: Path | None = None) -> str:
    """Sub-network epochs (epochs x sub-networks per step): compute in forward+backward
    passes over the training set, whatever the hardware and threads; with ``one``, also
    as a multiple of that run's."""
    c = load(exp / "compute.json")
    n = c["epochs_counted"] * per_epoch(c)
    k = c["subnets_per_step"]
    out = f"{c['epochs_counted']} x {k} = {n}" if per_epoch(c) == k else \
        f"{c['epochs_counted']} x {k} on 1/{k} of each batch = {n}"
    if one is not None:
        o = load(one / "compute.json")
        out += f" ({n / (o['epochs_counted'] * per_epoch(o)):.2f}x one individual model)"
    return out


def per_epoch(compute: dict) -> int:
    """Passes over the training set per epoch (= sub-networks per step unless they split
    each mini-batch; runs before ``passes_per_epoch`` was recorded never split)."""
    return compute.get("passes_per_epoch", compute["subnets_per_step"])


def threads(exp: Path) -> str:
    """torch threads (recorded since compute.json has them), and CPU s / wall s of the
    epochs: above 1 only with more than one busy thread."""
    c = load(exp / "compute.json")
    t = c.get("torch_threads")
    busy = c["train_cpu_seconds"] / max(c.get("train_wall_seconds_epochs", 0.0), 1e-9)
    return f"{', '.join(map(str, t)) if t else '?'} ({busy:.2f})"


def supernets(args) -> list[tuple[str, Path]]:
    """(label, experiment dir) of every supernet in the table; --omni first."""
    out = [("", Path(args.omni))]
    for item in args.also:
        label, sep, d = item.partition("=")
        if not sep or not label or not d:
            raise SystemExit(f"table_a: --also {item!r}: expected LABEL=DIR")
        out.append((label, Path(d)))
    return out


def describe(exp: Path) -> str:
    """The supernet's training recipe, from its config.yaml."""
    conf = yaml.safe_load(load_text(exp / "config.yaml"))
    omni = conf.get("omni_conf") or {}
    sampler = omni.get("sampler") or {}
    choices = omni.get("choices") or []
    span = f"{min(choices)}-{max(choices)}" if choices else "default"
    split = ", each on 1/K of the mini-batch" if omni.get("split_batch") else ""
    return (f"{conf.get('max_epoch')} epochs, {sampler.get('rule', 'sandwich')} x {sampler.get('num_subnets', 3)} "
            f"sub-networks per step{split}, per-layer sparsity choices {span}, "
            f"distillation weight {omni.get('distill_weight', 0.0)}")


def calibration(exports: list[dict]) -> str:
    """Where the exported BatchNorm statistics come from (export.json ``bn_calibration``)."""
    kinds = {json.dumps(e.get("bn_calibration") or {}, sort_keys=True) for e in exports}
    if kinds == {"{}"}:
        return "as trained (the checkpoint's running averages)"
    if len(kinds) > 1:
        return "mixed: some exports recalibrated, some not (re-run the export stages)"
    c = exports[0]["bn_calibration"]
    return f"re-estimated for each sub-network on {c['utts']} utts of `{tables.rel_text(str(c['data_dir']))}`"


def rows(args) -> list[dict]:
    out = []
    for s, prune in zip(args.targets, args.prune):
        ind = Path(prune) / "export"
        subs = [(label, load(d / f"export_{s}" / "export.json"),
                 load(d / f"export_{s}" / args.decode / "scores.json")) for label, d in supernets(args)]
        out.append({
            "target": s,
            "ind": load(ind / "export.json"), "ind_scores": load(ind / args.decode / "scores.json"),
            "subs": subs,  # (label, export.json, scores.json) per supernet, --omni first
            "ind_cpu": cpu(Path(prune)),
        })
    return out


def sub_name(label: str) -> str:
    return f"(b) omni sub-network, {label}" if label else "(b) omni sub-network"


def render(args, table: list[dict]) -> str:
    dense_scores = load(Path(args.dense) / args.decode / "scores.json")
    sets = args.sets
    head = "| sparsity | model | non-zero params | bytes on disk | " + " | ".join(f"{s} WER %" for s in sets) + " |"
    lines = [
        "### Table A: omni-sparsity supernet vs individually pruned models",
        "",
        *([tables.rel_text(args.note), ""] if args.note else []),
        f"Written by `local/table_a.py` from the recipe's outputs; command: `{tables.rel_text(args.command)}`.",
        "(a) = gradual magnitude pruning of the dense model to that sparsity, alone;",
        "(b) = the sub-network found by evolutionary search in the one supernet under (a)'s size.",
        "",
        *(f"Supernet{' ' + label if label else ''} (`{tables.rel(d)}`): {describe(d)}."
          for label, d in supernets(args)),
        "",
        "BatchNorm statistics of the exported models (espnet_omni.search.bn_calib):",
        f"(a) individual: {calibration([r['ind'] for r in table])};",
        *(f"{sub_name(label)}: {calibration([r['subs'][i][1] for r in table])}."
          for i, (label, _) in enumerate(supernets(args))),
        "",
        head,
        "|" + "---|" * (4 + len(sets)),
        "| 0 | dense | - | - | " + " | ".join(f"{wer(dense_scores, s):.1f}" for s in sets) + " |",
    ]
    for r in table:
        entries = [("(a) individual", r["ind"], r["ind_scores"])]
        entries += [(sub_name(label), e, sc) for label, e, sc in r["subs"]]
        for name, e, sc in entries:
            lines.append(
                f"| {r['target']} | {name} | {e['nonzero_params']:,} | {e['model_bytes']:,} | "
                + " | ".join(f"{wer(sc, s):.1f}" for s in sets) + " |"
            )
    ind_total = sum(r["ind_cpu"] for r in table)
    ind_wall = sum(median_epochs(Path(p)) for p in args.prune)
    mean_ind = ind_total / max(len(table), 1)
    one = Path(args.prune[0])
    lines += [
        "",
        "Training compute (from each run's compute.json; every model starts from the same dense model).",
        "CPU core-seconds of finished epochs grow with the torch thread count, so they compare only"
        " between runs at equal threads (`?`: not recorded by that run; a CPU s / wall s ratio above 1"
        " means more than one busy thread); the sub-network epochs (epochs x sub-networks per step,"
        " forward+backward passes over the training set) compare whatever the hardware; the last column"
        " is each run's median epoch wall time (ESPnet's train.log) times its epochs, which epochs slowed"
        " by other jobs on the machine do not inflate (it compares runs on the same machine and threads):",
        "",
        "| what | sub-network epochs | torch threads (CPU s / wall s) | CPU s | median epoch x epochs, wall min |",
        "|---|---|---|---|---|",
        f"| dense model (shared start) | {passes(Path(args.dense))} | {threads(Path(args.dense))} "
        f"| {cpu(Path(args.dense)):.0f} | {median_epochs(Path(args.dense)) / 60:.1f} |",
        f"| all {len(table)} individually pruned models | - | "
        f"{'; '.join(sorted({threads(Path(p)) for p in args.prune}))} | {ind_total:.0f} | {ind_wall / 60:.1f} |",
        f"| one individually pruned model (mean) | {passes(one)} | - | {mean_ind:.0f} "
        f"| {ind_wall / len(table) / 60:.1f} |",
    ]
    for label, d in supernets(args):
        c, w = cpu(d), median_epochs(d)
        lines.append(f"| {'the supernet ' + label if label else 'the one supernet'} | {passes(d, one)} "
                     f"| {threads(d)} | {c:.0f} ({c / mean_ind:.2f}x one individual model) "
                     f"| {w / 60:.1f} ({w / (ind_wall / len(table)):.2f}x) |")
    lines.append("")
    for test in tables.verdict_sets(sets):
        for i, (label, d) in enumerate(supernets(args)):
            better = [r for r in table if wer(r["subs"][i][2], test) <= wer(r["ind_scores"], test)]
            lines.append(f"On `{test}`, the omni sub-network{' (' + label + ')' if label else ''} is at least as good "
                         f"as the individual model at {len(better)} of {len(table)} sizes (C1).")
            if args.dump is not None:
                lines.append("WER of (b) minus (a) per size, paired bootstrap over the utterances "
                             "(1000 resamples, `espnet_omni.scoring.wer.paired_bootstrap`):")
                for r, prune in zip(table, args.prune):
                    diff = tables.significance(
                        args.dump / test / "text", Path(d) / f"export_{r['target']}" / args.decode / test / "text",
                        Path(prune) / "export" / args.decode / test / "text", "table_a")
                    lines.append(f"- {r['target']}: {diff}")
                lines.append("")
    return "\n".join(lines) + "\n"


def plot(args, table: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    test = args.sets[1] if len(args.sets) > 1 else args.sets[0]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    curves = [("individually pruned", "o", [(r["ind"], r["ind_scores"]) for r in table])]
    for i, (label, _) in enumerate(supernets(args)):
        curves.append((f"omni sub-network, {label}" if label else "omni sub-network", "^" if i else "s",
                       [(r["subs"][i][1], r["subs"][i][2]) for r in table]))
    for label, marker, points in curves:
        pts = sorted((e["nonzero_params"], wer(sc, test)) for e, sc in points)
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
    p.add_argument("--note", default="",
                   help="provenance (machine load, what ran where, what was moved), written under the heading")
    p.add_argument("--dump", type=Path, default=None,
                   help="dump dir with <set>/text references: adds a paired bootstrap interval per size")
    p.add_argument("--also", nargs="*", default=[], metavar="LABEL=DIR",
                   help="other supernet runs (read like --omni) shown beside it")
    args = p.parse_args(cmd)
    if len(args.prune) != len(args.targets):
        raise SystemExit(f"table_a: {len(args.prune)} --prune dirs but {len(args.targets)} --targets")
    table = rows(args)
    replace_section(args.results_file, "table_a", render(args, table))
    plot(args, table)
    print(f"table_a: wrote {args.results_file} (section table_a) and {args.plot}")


if __name__ == "__main__":
    main()
