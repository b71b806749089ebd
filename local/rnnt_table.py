#!/usr/bin/env python3
"""The RNN-T rows: the papers' model beside CTC, from local/run_rnnt.sh's outputs.

Usage (local/run_rnnt.sh stage 4 calls it):
  python local/rnnt_table.py --ctc exp/asr_ctc exp/asr_ctc_dual_omni \
      --rnnt exp/asr_rnnt exp/asr_rnnt_dual_omni --sets test test_seen real --dump dump/raw \
      --stream_sparsity 0.7 --decode_configs conf/decode_ctc.yaml conf/decode_rnnt.yaml \
      --results_file RESULTS.md --command "local/run_rnnt.sh"

Reads, per experiment E (a dense model, then a supernet, for each head):
  E/rnnt_cmp/export_full/{export.json, decode_greedy/scores.json}   full-context size and WER
  E/rnnt_cmp/export_full/decode_lm/scores.json              with --lm_decode_configs: WER with the LM
  E/rnnt_cmp/stream_lm/{scores.json,<set>/latency.json}     with --stream_lm_decode_config: the RNN-T
                                                            supernet's streaming network with the LM
  E/rnnt_cmp/export_stream/export.json, E/rnnt_cmp/stream/scores.json,
  E/rnnt_cmp/stream/<set>/latency.json                      a supernet's streaming network
  E/compute.json, E/config.yaml                             training epochs, wall and CPU seconds
With --distill BASE KD...: the `rnnt_distill` section instead (local/run_rnnt.sh stage 6).
Writes: the `rnnt` section of --results_file: the table, RNN-T vs CTC on test and test_seen
with paired bootstrap intervals, and the two targets (the RNN-T supernet's wall time per epoch
<= 1.5x the CTC supernet's; streaming RTF <= 0.05 on one thread).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from espnet_omni.scoring import tables  # noqa: E402
from espnet_omni.scoring.results_file import replace_section  # noqa: E402

WHO = "rnnt_table"
WALL_TARGET = 1.5  # the RNN-T supernet's wall time per epoch / the CTC supernet's
RTF_TARGET = 0.05  # streaming, one thread


wer = tables.wer_percent


def model(exp: Path, head: str, kind: str, lm: bool = False, stream_lm: bool = False) -> dict:
    t = exp / "rnnt_cmp"
    comp = tables.load_json(exp / "compute.json", WHO)
    m = {"exp": exp, "head": head, "kind": kind, "compute": comp,
         "full": tables.load_json(t / "export_full" / "export.json", WHO),
         "full_scores": tables.load_json(t / "export_full" / "decode_greedy" / "scores.json", WHO)}
    if lm:
        m["lm_scores"] = tables.load_json(t / "export_full" / "decode_lm" / "scores.json", WHO)
    if kind == "supernet":
        m["stream"] = tables.load_json(t / "export_stream" / "export.json", WHO)
        m["stream_scores"] = tables.load_json(t / "stream" / "scores.json", WHO)
    if stream_lm:
        m["stream_lm_scores"] = tables.load_json(t / "stream_lm" / "scores.json", WHO)
    return m


def wall_per_epoch(m: dict) -> float:
    """The median epoch's training wall seconds: an epoch slowed by another job on the machine
    (or split by a resume) does not move it."""
    c = m["compute"]
    per = [e["wall"] for e in (c.get("per_epoch") or {}).values()]
    return statistics.median(per) if per else c["train_wall_seconds_epochs"] / c["epochs_counted"]


def hyp(m: dict, mode: str, test: str) -> Path:
    t = m["exp"] / "rnnt_cmp"
    d = {"full": t / "export_full" / "decode_greedy", "lm": t / "export_full" / "decode_lm", "stream": t / "stream",
         "stream_lm": t / "stream_lm"}
    return d[mode] / test / "text"


def _sig(args, test: str, a: dict, mode_a: str, b: dict, mode_b: str) -> str:
    """`` (difference ...)``: the paired bootstrap of decode ``a``/``mode_a`` against ``b``/``mode_b``
    on ``test`` ("" without --dump)."""
    if args.dump is None:
        return ""
    return " (" + tables.significance(args.dump / test / "text", hyp(a, mode_a, test), hyp(b, mode_b, test), WHO) + ")"


def _stream_lm_rtf(m: dict, test: str) -> float:
    return tables.load_json(m["exp"] / "rnnt_cmp" / "stream_lm" / test / "latency.json", WHO)["rtf"]


def render(args, ctc: list[dict], rnnt: list[dict]) -> str:
    sets, rtf_set = args.sets, (args.rtf_set if args.rtf_set in args.sets else args.sets[0])
    ws = " / ".join(sets)
    lines = [
        "### The papers' model: RNN-T beside CTC",
        "",
        *([tables.rel_text(args.note), ""] if args.note else []),
        f"Written by `local/rnnt_table.py` from the recipe's outputs; command: `{tables.rel_text(args.command)}`.",
        "Every model decoded the same way, greedy without the LM (CTC: `" + tables.rel_text(args.decode_configs[0])
        + "`; RNN-T: `" + tables.rel_text(args.decode_configs[1]) + "`, ESPnet's transducer search with beam 1), by",
        "`espnet_omni.bin.dual_mode_eval`: full-context = the (dense) full-context network exported and decoded by",
        f"ESPnet's Speech2Text; streaming = a supernet's {args.stream_sparsity:.0%}-sparse network chunk by chunk on one",
        "thread (CTC greedy; RNN-T greedy with the prediction network's state carried across chunks).",
        "Epochs as configured (the recipe's RNN-T configs train fewer epochs than the CTC ones, for about the same",
        "training time; the columns give what each took).",
        "",
    ]
    lm = args.lm_decode_configs is not None
    if lm:
        lines[-1:-1] = [
            "With the LM: each full-context network also decoded with run.sh's character LM as the product decodes (CTC: `"
            + tables.rel_text(args.lm_decode_configs[0]) + "`, CTC prefix beam search; RNN-T: `"
            + tables.rel_text(args.lm_decode_configs[1]) + "`, ESPnet's transducer beam search), shallow fusion.",
        ]
    stream_lm = args.stream_lm_decode_config is not None
    if stream_lm:
        conf = tables.load_yaml(Path(args.stream_lm_decode_config), WHO) or {}
        lines[-1:-1] = [
            f"Streaming with the LM: the RNN-T supernet's {args.stream_sparsity:.0%}-sparse network also chunk by chunk on "
            "one thread with the LM fused (`" + tables.rel_text(args.stream_lm_decode_config) + "`: modified beam search, "
            f"beam {conf.get('beam_size')}, lm_weight {conf.get('lm_weight')}, penalty {conf.get('penalty', 0.0)}; "
            "`espnet_omni.bin.asr_inference_streaming`).",
        ]
    lines += [
        f"| model | head | epochs | training wall (s): total / median epoch | training CPU-s | full-context WER % ({ws}) "
        + (f"| full-context WER % with the LM ({ws}) " if lm else "")
        + f"| streaming WER % ({ws}) " + (f"| streaming WER % with the LM ({ws}) " if stream_lm else "")
        + f"| streaming RTF ({rtf_set}, 1 thread) | non-zero params: full / streaming |",
        "|---|---|---|---|---|---|" + ("---|" if lm else "") + ("---|" if stream_lm else "") + "---|---|---|",
    ]
    rtfs = {}
    for m in (ctc[0], rnnt[0], ctc[1], rnnt[1]):
        c = m["compute"]
        stream = "-" if "stream" not in m else " / ".join(f"{wer(m['stream_scores'], s):.1f}" for s in sets)
        if stream_lm:
            stream += " | " + ("-" if "stream_lm_scores" not in m else
                               " / ".join(f"{wer(m['stream_lm_scores'], s):.1f}" for s in sets))
        rtf = "-"
        if "stream" in m:
            lat = tables.load_json(m["exp"] / "rnnt_cmp" / "stream" / rtf_set / "latency.json", WHO)
            rtfs[m["head"]] = lat["rtf"]
            rtf = f"{lat['rtf']:.3f}"
        params = f"{m['full']['nonzero_params'] / 1e6:.2f} M" + (
            f" / {m['stream']['nonzero_params'] / 1e6:.2f} M" if "stream" in m else "")
        lines.append(
            f"| `{m['exp'].name}` ({m['kind']}) | {m['head']} | {c['epochs_counted']} | "
            f"{c['train_wall_seconds_epochs']:.0f} / {wall_per_epoch(m):.0f} | {c['train_cpu_seconds']:.0f} | "
            + " / ".join(f"{wer(m['full_scores'], s):.1f}" for s in sets)
            + ((" | " + " / ".join(f"{wer(m['lm_scores'], s):.1f}" for s in sets)) if lm else "")
            + f" | {stream} | {rtf} | {params} |")
    lines += ["", "RNN-T minus CTC, same utterances (paired bootstrap, 1000 resamples, 95% interval):", ""]
    for test in tables.verdict_sets(sets):
        cmp = [((ctc[0], rnnt[0]), "full", "dense model, full-context"),
               ((ctc[1], rnnt[1]), "full", "supernet, full-context"),
               ((ctc[1], rnnt[1]), "stream", f"supernet, {args.stream_sparsity:.0%} streaming")]
        if lm:
            cmp[2:2] = [((ctc[0], rnnt[0]), "lm", "dense model, full-context with the LM"),
                        ((ctc[1], rnnt[1]), "lm", "supernet, full-context with the LM")]
        for (c, r), mode, what in cmp:
            key = f"{mode}_scores"
            a, b = wer(r[key], test), wer(c[key], test)
            lines.append(f"- {what} on `{test}`: RNN-T {a:.1f}% vs CTC {b:.1f}%{_sig(args, test, r, mode, c, mode)}.")
        if stream_lm:
            r = rnnt[1]
            a, b = wer(r["stream_lm_scores"], test), wer(r["stream_scores"], test)
            lines.append(f"- RNN-T supernet, {args.stream_sparsity:.0%} streaming on `{test}`: with the LM (beam search) "
                         f"{a:.1f}% vs greedy {b:.1f}%{_sig(args, test, r, 'stream_lm', r, 'stream')}.")
    ratio = wall_per_epoch(rnnt[1]) / wall_per_epoch(ctc[1])
    lines += [
        "",
        f"Targets: the RNN-T supernet's training wall time per epoch (median epoch) is {ratio:.2f}x the CTC supernet's "
        f"(target <= {WALL_TARGET}x: {'met' if ratio <= WALL_TARGET else 'missed'}); dense models: "
        f"{wall_per_epoch(rnnt[0]) / wall_per_epoch(ctc[0]):.2f}x. Streaming RTF on one thread: RNN-T "
        f"{rtfs['RNN-T']:.3f}, CTC {rtfs['CTC']:.3f} (target <= {RTF_TARGET}: "
        f"{'met' if rtfs['RNN-T'] <= RTF_TARGET else 'missed'})"
        + (f"; RNN-T with the LM (beam search) {_stream_lm_rtf(rnnt[1], rtf_set):.3f}." if stream_lm else ".")
    ]
    return "\n".join(lines) + "\n"


def render_distill(args, models: list[dict]) -> str:
    """The rnnt_distill section: stage 2's RNN-T supernet (first) beside the same supernet trained
    with in-place distillation through each head, both modes greedy, with paired bootstrap intervals."""
    sets = args.sets
    ws = " / ".join(sets)
    lines = [
        "### RNN-T supernet: in-place distillation through the joint network or the auxiliary CTC head",
        "",
        *([tables.rel_text(args.note), ""] if args.note else []),
        f"Written by `local/rnnt_table.py --distill` from the recipe's outputs; command: `{tables.rel_text(args.command)}`.",
        "The same RNN-T dual-mode omni supernet config from the same dense RNN-T model; the distillation runs put every",
        "sub-network on the whole mini-batch (split_batch false: the teacher's utterances), the densest one's detached",
        "posteriors teaching the sparse ones (KL, weight distill_weight): `transducer` = the joint network's over the",
        "RNN-T lattice, `ctc` = the auxiliary CTC head's per frame. Decoded greedily without the LM (`"
        + tables.rel_text(args.decode_configs[1]) + f"`); streaming = the {args.stream_sparsity:.0%}-sparse network chunk by",
        "chunk on one thread. The first row differs from the distillation rows in two ways (each sub-network on a third",
        "of the mini-batch, no distillation), so rows against it measure both together, at the time per epoch shown;",
        "the heads are compared between the distillation rows.",
        "",
        f"| model | split_batch | distill_head (weight) | epochs | training wall (s): total / median epoch "
        f"| full-context WER % ({ws}) | streaming WER % ({ws}) |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in models:
        omni = tables.load_yaml(m["exp"] / "config.yaml", WHO).get("omni_conf") or {}
        kd = float(omni.get("distill_weight") or 0.0)
        c = m["compute"]
        lines.append(
            f"| `{m['exp'].name}` | {str(bool(omni.get('split_batch', False))).lower()} | "
            + (f"{omni.get('distill_head', 'ctc')} ({kd:g})" if kd > 0 else "none") + f" | {c['epochs_counted']} | "
            f"{c['train_wall_seconds_epochs']:.0f} / {wall_per_epoch(m):.0f} | "
            + " / ".join(f"{wer(m['full_scores'], s):.1f}" for s in sets) + " | "
            + " / ".join(f"{wer(m['stream_scores'], s):.1f}" for s in sets) + " |")
    lines += ["", "Differences, same utterances (paired bootstrap, 1000 resamples, 95% interval):", ""]
    base, kds = models[0], models[1:]
    pairs = [(k, base) for k in kds] + [(kds[i], kds[j]) for i in range(len(kds)) for j in range(i + 1, len(kds))]
    for test in tables.verdict_sets(sets):
        for mode, what in (("stream", f"{args.stream_sparsity:.0%} streaming"), ("full", "full-context")):
            for a, b in pairs:
                x, y = wer(a[f"{mode}_scores"], test), wer(b[f"{mode}_scores"], test)
                lines.append(f"- {what} on `{test}`: `{a['exp'].name}` {x:.1f}% vs `{b['exp'].name}` {y:.1f}%"
                             f"{_sig(args, test, a, mode, b, mode)}.")
    return "\n".join(lines) + "\n"


def main(cmd=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ctc", nargs=2, type=Path, metavar=("DENSE", "SUPERNET"))
    p.add_argument("--rnnt", nargs=2, type=Path, metavar=("DENSE", "SUPERNET"))
    p.add_argument("--distill", nargs="+", type=Path, metavar="SUPERNET",
                   help="instead: the distillation table (run_rnnt.sh stage 6): the supernet without "
                        "distillation, then those with it (each evaluated into <exp>/rnnt_cmp)")
    p.add_argument("--sets", nargs="+", required=True)
    p.add_argument("--rtf_set", default="test", help="the set whose streaming RTF is shown")
    p.add_argument("--dump", type=Path, default=None, help="dump dir with <set>/text: paired bootstrap intervals")
    p.add_argument("--stream_sparsity", type=float, required=True)
    p.add_argument("--decode_configs", nargs=2, required=True, metavar=("CTC", "RNNT"))
    p.add_argument("--lm_decode_configs", nargs=2, default=None, metavar=("CTC", "RNNT"),
                   help="the full-context networks were also decoded with the LM (rnnt_cmp/export_full/decode_lm)")
    p.add_argument("--stream_lm_decode_config", default=None, metavar="RNNT",
                   help="the RNN-T supernet's streaming network was also decoded with the LM (rnnt_cmp/stream_lm)")
    p.add_argument("--results_file", type=Path, required=True)
    p.add_argument("--section", default="rnnt")
    p.add_argument("--command", default="")
    p.add_argument("--note", default="", help="provenance (machine load, ...), written under the heading")
    args = p.parse_args(cmd)
    if args.distill:
        if len(args.distill) < 2:
            p.error("--distill: the supernet without distillation and at least one with it")
        models = [model(e, "RNN-T", "supernet") for e in args.distill]
        replace_section(args.results_file, args.section, render_distill(args, models))
        print(f"rnnt_table: wrote {args.results_file} (section {args.section})")
        return
    if not (args.ctc and args.rnnt):
        p.error("--ctc DENSE SUPERNET and --rnnt DENSE SUPERNET are required (or --distill)")
    lm = args.lm_decode_configs is not None
    ctc = [model(args.ctc[0], "CTC", "dense", lm), model(args.ctc[1], "CTC", "supernet", lm)]
    rnnt = [model(args.rnnt[0], "RNN-T", "dense", lm),
            model(args.rnnt[1], "RNN-T", "supernet", lm, stream_lm=args.stream_lm_decode_config is not None)]
    replace_section(args.results_file, args.section, render(args, ctc, rnnt))
    print(f"rnnt_table: wrote {args.results_file} (section {args.section})")


if __name__ == "__main__":
    main()
