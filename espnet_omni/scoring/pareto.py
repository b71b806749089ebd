#!/usr/bin/env python3
"""The main job's Pareto table: every model of one supernet run, its size, and its WER in
both modes (run.sh stages 8-11).

Three uses (run.sh calls each):

* ``--check_budgets B ...``: the search budgets are numbers in (0, 1], at least one,
  strictly ascending; otherwise a message naming the bad value (exit code 2).
* ``--search_json F --budgets B ...``: one ``NAME SUBNET_YAML MODE`` line per budget, the
  sub-network ``espnet_omni.bin.search`` found for it (MODE: the encoder mode it was
  scored in, the one its BatchNorm statistics are re-estimated in at export).
* ``--supernet EXP ...``: the table. Rows: the supernet's dense network, then one
  sub-network per budget, each exported by stage 9 into ``EXP/pareto/<name>/`` and
  decoded by stage 10 chunk by chunk as a user streams it (``chunk_by_chunk_<tag>/<set>/``:
  text and ``latency.json``, the streaming column), full-context (``decode_<tag>_full``) and,
  as a check, its streaming-mode encoder output decoded after the utterance
  (``decode_<tag>_streaming``). Writes the ``pareto``
  section of ``--results_file`` and the plot ``EXP/pareto/pareto.png`` (and ``--plot``).

Usage:
    python -m espnet_omni.scoring.pareto --supernet exp/asr_ctc_dual_omni --dense exp/asr_ctc \\
        --budgets 0.3 0.4 0.5 --decode decode_decode_ctc_lm_valid.loss.ave_lm_char \\
        --sets test test_seen real --latency_set test --dump dump/raw --results_file RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import shutil
import sys
from pathlib import Path

from espnet_omni.evolutionary_search.pareto import pareto_front
from espnet_omni.evolutionary_search.report import budget_label
from espnet_omni.scoring.results_file import replace_section
from espnet_omni.corpus.datadir import read_kv
from espnet_omni.scoring.tables import load_json, median_epochs, rel, rel_text
from espnet_omni.scoring.wer import bootstrap_summary, paired_bootstrap

MODE_NAMES = {"streaming": "streaming", "full": "full-context"}
# the table's WER columns: (key, where its texts are, heading); "chunk": what a streaming user gets
COLUMNS = (("chunk", "chunk_by_chunk", "streaming WER, chunk by chunk"),
           ("full", "full", "full-context WER"),
           ("streaming", "streaming", "check: streaming decoded after the utterance, WER"))
# which column a mode's models are read in (the plot, the front, the intervals)
MODE_COLUMN = {"streaming": "chunk", "full": "full"}


def parse_budgets(values: list[str]) -> list[float]:
    """The search budgets: numbers in (0, 1], at least one, strictly ascending.

    >>> parse_budgets(["0.3", "0.45", "0.6"])
    [0.3, 0.45, 0.6]
    >>> parse_budgets(["0.5", "0.3"])
    Traceback (most recent call last):
    ...
    ValueError: --budgets 0.5 0.3: not ascending (0.3 follows 0.5); give them smallest first, each once
    """
    shown = " ".join(values)
    if not values:
        raise ValueError("--budgets is empty: give at least one budget, a fraction of the dense "
                         "encoder's parameters in (0, 1], e.g. --budgets \"0.3 0.4 0.5\"")
    out = []
    for v in values:
        try:
            b = float(v)
        except ValueError:
            raise ValueError(f"--budgets {shown}: {v!r} is not a number (fractions of the dense "
                             "encoder's parameters in (0, 1])") from None
        if not (0.0 < b <= 1.0) or math.isnan(b):
            raise ValueError(f"--budgets {shown}: {v} is outside (0, 1] (a fraction of the dense "
                             "encoder's parameters)")
        if out and b <= out[-1]:
            raise ValueError(f"--budgets {shown}: not ascending ({v} follows {out[-1]:g}); "
                             "give them smallest first, each once")
        out.append(b)
    return out


def model_name(budget: float) -> str:
    """Directory name of a budget's model: ``frac0.3``."""
    return f"frac{budget_label(budget)}"


def search_models(search_json: Path, budgets: list[float]) -> list[tuple[str, Path, str, dict]]:
    """``(name, subnet yaml, mode, search result)`` per budget, from ``search.json``; every
    budget must be there."""
    summary = load_json(search_json, "pareto")
    found = {float(r["budget"]): r for r in summary["results"]}
    missing = [b for b in budgets if b not in found]
    if missing:
        raise SystemExit(f"pareto: {search_json} has no sub-network for budget(s) "
                         f"{' '.join(f'{b:g}' for b in missing)} (it was searched for "
                         f"{' '.join(f'{b:g}' for b in sorted(found))}): redo run.sh stage 8")
    mode = summary.get("mode", "full")
    return [(model_name(b), search_json.parent / found[b]["file"], mode, found[b]) for b in budgets]


def _decode_dir(args, d: Path, col: str) -> Path:
    """Where a model's texts for column ``col`` are: ``decode_<tag>_{full,streaming}`` or
    ``chunk_by_chunk_<tag>``."""
    where = dict((k, w) for k, w, _ in COLUMNS)[col]
    if where == "chunk_by_chunk":
        return d / args.decode.replace("decode_", "chunk_by_chunk_", 1)
    return d / f"{args.decode}_{where}"


def _wer(args, d: Path, col: str, s: str) -> float:
    from espnet_omni.scoring.wer import corpus_counts

    ref = read_kv(args.dump / s / "text")
    text = _decode_dir(args, d, col) / s / "text"
    if not text.is_file():
        raise SystemExit(f"pareto: {text} is missing: redo run.sh stage 10")
    return 100 * corpus_counts(ref, read_kv(text)).rate


def rows(args) -> list[dict]:
    """One dict per model: name, sizes, WER per mode and set, chunk-by-chunk latency."""
    pareto = args.supernet / "pareto"
    models = [("dense", None, "full", {"fraction": 1.0})]
    models += search_models(args.supernet / "search" / "search.json", args.budgets)
    out = []
    for name, _, mode, result in models:
        d = pareto / name
        export = load_json(d / "export.json", "pareto")
        out.append({
            "name": name, "trained_for": mode, "dir": d, "format": export["format"],
            "nonzero_params": export["nonzero_params"], "model_bytes": export["model_bytes"],
            "encoder_fraction": result["fraction"],
            "wer": {(c, s): _wer(args, d, c, s) for c, _, _ in COLUMNS for s in args.sets},
            "latency": load_json(_decode_dir(args, d, "chunk") / args.latency_set / "latency.json", "pareto"),
        })
    return out


def on_front(points: list[tuple[float, float]]) -> list[bool]:
    """Which (size, error) points lie on the Pareto front (:func:`..evolutionary_search.pareto.pareto_front`);
    a point equal to one on it is on it too.

    >>> on_front([(1, 30), (2, 25), (3, 28), (4, 20), (2, 25)])
    [True, True, False, True, True]
    """
    front = {(p.cost, p.score) for p in pareto_front((c, e, None) for c, e in points)}
    return [(float(c), float(e)) in front for c, e in points]


def training_line(args) -> str:
    """The compute of the one training run: the dense model, then the supernet."""
    parts = []
    for what, exp in (("dense model (stage 5)", args.dense), ("supernet (stage 7)", args.supernet)):
        c = load_json(exp / "compute.json", "pareto")
        parts.append(f"{what} {c['epochs_counted']} epochs, {c['train_wall_seconds_epochs'] / 60:.1f} min wall "
                     f"({c['train_cpu_seconds']:.0f} CPU-s; median epoch x epochs "
                     f"{median_epochs(exp, 'pareto') / 60:.1f} min)")
    return "; ".join(parts)


def stage_times(exp: Path, recipe: str = "./run.sh", stages: range = range(1, 11)) -> str:
    """What the run's stages took, from ``exp/stage_seconds.tsv`` (each stage's last record, as
    local/recipe_lib.sh's finish_stage wrote it); empty when a stage has no record.

    >>> import tempfile; d = Path(tempfile.mkdtemp())
    >>> _ = (d / "stage_seconds.tsv").write_text("./run.sh\\t1\\t60\\tt\\n./run.sh\\t2\\t9\\tt\\n./run.sh\\t1\\t50\\tt\\n")
    >>> stage_times(d, stages=range(1, 3))
    'stages 1-2 took 59 s (0.98 min) by their own records: 1: 50 s, 2: 9 s'
    >>> stage_times(d, stages=range(1, 4))
    ''
    """
    f = exp / "stage_seconds.tsv"
    if not f.is_file():
        return ""
    last = {}
    for line in f.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[0] == recipe:
            last[int(parts[1])] = int(parts[2])
    if any(s not in last for s in stages):
        return ""
    total = sum(last[s] for s in stages)
    return (f"stages {stages.start}-{stages.stop - 1} took {total} s ({total / 60:.2f} min) by their own records: "
            + ", ".join(f"{s}: {last[s]} s" for s in stages))


def render(args, table: list[dict]) -> str:
    sets = args.sets
    now = datetime.date.today().isoformat()
    lines = [
        f"Written by `python -m espnet_omni.scoring.pareto` on {now} ({platform.machine()}, "
        f"host {platform.node() or '?'}) from the run `{rel_text(args.command)}`.",
        *(["", rel_text(args.note)] if args.note else []),
        *(["", f"Time: {t} (exp/stage_seconds.tsv; stage 11 writes this table)."]
          if (t := stage_times(args.dense.parent)) else []),
        "",
        f"One training run: {training_line(args)}. The supernet `{rel(args.supernet)}` holds a dense "
        "full-context network and sparse streaming sub-networks; stage 8 searched the best streaming "
        "sub-network for each budget (a fraction of the dense encoder's parameters; CTC greedy WER on the "
        "valid set), stage 9 exported each with its BatchNorm statistics re-estimated in the mode it was "
        "trained for, stage 10 decoded every export three ways: **streaming, chunk by chunk** "
        "as a user streams it (`python -m espnet_omni.bin.asr_inference_streaming`: audio fed one chunk at a "
        "time, the encoder's caches carried, CTC prefix beam search with the LM fused chunk by chunk, one "
        f"thread; `{rel(args.stream_decode_config or args.decode_config) if (args.stream_decode_config or args.decode_config) else args.decode}`); "
        "full-context (ESPnet's beam search with the LM, "
        f"`{rel(args.decode_config) if args.decode_config else args.decode}`); and, as a check, the streaming-mode "
        "encoder output of the whole utterance decoded after it by the same ESPnet search. WER in %; the "
        "model trained for a mode is the one to read in that mode's columns (the dense network was not "
        "trained to stream, the sparse ones not to run full-context). Encoder params: non-zero encoder "
        f"parameters (share of the dense encoder's); file: the `{table[0]['format']}` export's model.pth. "
        f"Streaming cost on `{args.latency_set}`, one thread: real-time factor (model loading excluded), "
        "compute per chunk p50 / p95 ms, first partial (ms from the stream's start, audio at real time, to "
        "the first non-empty partial, median), algorithmic latency (chunk + front-end context).",
        "",
    ]
    head = ["model", "trained for", "encoder params", "file MB"]
    head += [f"{h} `{s}`" for _, _, h in COLUMNS for s in sets]
    head += ["streaming: RTF / chunk ms p50 / p95 / first partial ms / latency ms"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table:
        lat = r["latency"]
        cells = [r["name"], MODE_NAMES[r["trained_for"]],
                 f"{r['nonzero_params'] / 1e6:.2f} M ({100 * r['encoder_fraction']:.0f}%)",
                 f"{r['model_bytes'] / 1e6:.1f}"]
        cells += [f"{r['wer'][c, s]:.1f}" for c, _, _ in COLUMNS for s in sets]
        cells.append(f"{lat['rtf']:.3f} / {lat['chunk_compute_ms_p50']:.1f} / {lat['chunk_compute_ms_p95']:.1f} / "
                     f"{_ms(lat.get('first_partial_ms_p50'))} / {lat['algorithmic_latency_ms']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    # the front of the models trained to stream, and each step down in size with its interval
    main = sets[0]
    stream = [r for r in table if r["trained_for"] == "streaming"]
    on = on_front([(r["nonzero_params"], r["wer"]["chunk", main]) for r in stream])
    lines.append(f"Streaming Pareto front on `{main}` (size vs chunk-by-chunk WER): "
                 + ", ".join(f"{r['name']}{'' if f else ' (dominated)'}" for r, f in zip(stream, on)) + ".")
    ref_dir = args.dump
    for s in sets[:2]:
        ref = read_kv(ref_dir / s / "text")
        if len(ref) < 20:
            continue
        for small, big in zip(stream, stream[1:]):
            d = paired_bootstrap(ref, _hyp(args, small, "chunk", s), _hyp(args, big, "chunk", s))
            lines.append(f"- `{s}`, streaming chunk by chunk, {small['name']} vs {big['name']}: {bootstrap_summary(d)}")
        dense = table[0]
        if stream:
            d = paired_bootstrap(ref, _hyp(args, stream[-1], "chunk", s), _hyp(args, dense, "full", s))
            lines.append(f"- `{s}`, {stream[-1]['name']} streaming chunk by chunk vs dense full-context: "
                         f"{bootstrap_summary(d)}")
        for r in stream:  # what streaming costs against decoding the same encoder output after the utterance
            d = paired_bootstrap(ref, _hyp(args, r, "chunk", s), _hyp(args, r, "streaming", s))
            lines.append(f"- `{s}`, {r['name']} chunk by chunk vs the same encoder output decoded after the "
                         f"utterance: {bootstrap_summary(d)}")
    lines += ["", f"![Pareto plot]({rel(args.plot or args.supernet / 'pareto' / 'pareto.png')})", ""]
    return "\n".join(lines)


def _ms(v) -> str:
    return "-" if v is None else f"{v:.0f}"


def _hyp(args, row: dict, col: str, s: str) -> dict[str, str]:
    return read_kv(_decode_dir(args, row["dir"], col) / s / "text")


def plot(args, table: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, min(2, len(args.sets)), figsize=(10, 4), squeeze=False)
    style = {"streaming": ("o", "C0"), "full": ("s", "C1")}
    for ax, s in zip(axes[0], args.sets[:2]):
        for m, (marker, color) in style.items():
            # filled and joined: the models trained for the mode (the product's front in it);
            # hollow: the others run in that mode anyway
            own = sorted((r for r in table if r["trained_for"] == m), key=lambda r: r["nonzero_params"])
            other = [r for r in table if r["trained_for"] != m]
            col = MODE_COLUMN[m]
            what = "chunk by chunk, " if col == "chunk" else ""
            ax.plot([r["nonzero_params"] / 1e6 for r in own], [r["wer"][col, s] for r in own], marker + "-",
                    color=color, label=f"{MODE_NAMES[m]} mode ({what}LM), trained for it")
            ax.plot([r["nonzero_params"] / 1e6 for r in other], [r["wer"][col, s] for r in other], marker,
                    color=color, mfc="none", alpha=0.6, label=f"{MODE_NAMES[m]} mode, not trained for it")
        for r in table:
            m = r["trained_for"]
            ax.annotate(r["name"], (r["nonzero_params"] / 1e6, r["wer"][MODE_COLUMN[m], s]), fontsize=8,
                        textcoords="offset points", xytext=(4, 4))
        ax.set_xlabel("non-zero encoder parameters (M)")
        ax.set_ylabel(f"WER % on {s}")
        ax.set_title(f"one supernet, every size: {s}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check_budgets", nargs="*", default=None, help="check the budgets and exit")
    p.add_argument("--budgets", nargs="*", default=None)
    p.add_argument("--search_json", type=Path, default=None,
                   help="print 'NAME SUBNET_YAML MODE' per budget from this search.json and exit")
    p.add_argument("--supernet", type=Path, help="the supernet's experiment dir (holds search/, pareto/)")
    p.add_argument("--dense", type=Path, help="the dense model's experiment dir (the supernet's start)")
    p.add_argument("--decode", help="decode name prefix: decode_<tag> (stage 10 adds _full / _streaming)")
    p.add_argument("--decode_config", type=Path, default=None, help="the decoding config (named in the text)")
    p.add_argument("--stream_decode_config", type=Path, default=None,
                   help="the chunk-by-chunk decoder's config (named in the text; default --decode_config)")
    p.add_argument("--sets", nargs="+", default=["test"])
    p.add_argument("--latency_set", default="test")
    p.add_argument("--dump", type=Path, help="directory holding <set>/text")
    p.add_argument("--results_file", type=Path, default=None)
    p.add_argument("--command", default="")
    p.add_argument("--plot", type=Path, default=None, help="a copy of the plot (e.g. the README's)")
    p.add_argument("--note", default="", help="provenance (machine load, reruns), written under the first line")
    return p


def main(cmd=None) -> None:
    args = get_parser().parse_args(cmd)
    try:
        if args.check_budgets is not None:
            parse_budgets(args.check_budgets)
            return
        budgets = parse_budgets(args.budgets or [])
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    args.budgets = budgets
    if args.search_json is not None:
        for name, subnet, mode, _ in search_models(args.search_json, budgets):
            print(name, subnet, mode)
        return
    for need in ("supernet", "dense", "decode", "dump"):
        if getattr(args, need) is None:
            raise SystemExit(f"pareto: --{need} is required for the table")
    table = rows(args)
    path = args.supernet / "pareto" / "pareto.png"
    plot(args, table, path)
    if args.plot is not None and args.plot.resolve() != path.resolve():
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, args.plot)
    body = render(args, table)
    if args.results_file is not None and str(args.results_file) != "none":
        replace_section(args.results_file, "pareto", body)
    print(body)


if __name__ == "__main__":
    main()
