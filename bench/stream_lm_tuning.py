#!/usr/bin/env python3
"""Tune the chunk-by-chunk decoder's LM fusion on dev: beam, lm_weight, penalty (length bonus).

Usage (after ./run.sh, from the recipe directory):
    PYTHONPATH=. .venv/bin/python bench/stream_lm_tuning.py --dir . --model frac0.5 \
        --grid "1.3 0.5 20" "1.3 1.0 20" "1.3 1.5 40" ...      # "lm_weight penalty beam" each
Writes: bench/results/stream_lm_tuning.{md,json}; the decodes under
``<supernet>/pareto/<model>/stream_lm_tuning/w<W>_p<P>_b<B>/`` (a finished one is kept).

Why its own config: ESPnet's label-synchronous search (``conf/decode_ctc_lm.yaml``, tuned on dev by
local/run_lm_tuning.sh) adds a hypothesis' LM score one label at a time; the frame-synchronous
prefix search compares prefixes of different lengths at every frame, so the length bonus that
balances the LM's cost per token is not the same. Each point decodes ``dump/raw/dev`` chunk by chunk
with ``python -m espnet_omni.bin.asr_inference_streaming`` (one thread), the main job's LM.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
from omni_sparsity import command_line, write_results  # noqa: E402

from espnet_omni.corpus.datadir import read_kv  # noqa: E402
from espnet_omni.scoring.wer import corpus_counts  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dir", type=Path, default=Path("."))
    p.add_argument("--supernet", default="exp/asr_ctc_dual_omni")
    p.add_argument("--lm", default="exp/lm_char")
    p.add_argument("--model", default="frac0.5")
    p.add_argument("--set", default="dev")
    p.add_argument("--grid", nargs="+", required=True, help='"lm_weight penalty beam" per point')
    p.add_argument("--out_dir", type=Path, default=ROOT / "bench" / "results")
    return p


def main(cmd=None) -> None:
    args = get_parser().parse_args(cmd)
    sup, lm = args.dir / args.supernet, args.dir / args.lm
    data = args.dir / "dump" / "raw" / args.set
    ref = read_kv(data / "text")
    rows = []
    for point in args.grid:
        try:
            w, pen, beam = point.split()
            float(w), float(pen), int(beam)
        except ValueError:
            sys.exit(f'error: --grid {point!r}: expected "lm_weight penalty beam", e.g. "1.3 1.0 20"')
        out = sup / "pareto" / args.model / "stream_lm_tuning" / f"w{w}_p{pen}_b{beam}"
        if not (out / "latency.json").is_file():
            print(f"decoding {args.set}: lm_weight {w} penalty {pen} beam {beam}", flush=True)
            subprocess.run([sys.executable, "-m", "espnet_omni.bin.asr_inference_streaming",
                            "--asr_train_config", str(sup / "config.yaml"),
                            "--asr_model_file", str(sup / "pareto" / args.model / "dense" / "model.pth"),
                            "--lm_train_config", str(lm / "config.yaml"), "--lm_file", str(lm / "valid.loss.ave.pth"),
                            "--lm_weight", w, "--penalty", pen, "--beam_size", beam, "--data_dir", str(data),
                            "--output_dir", str(out)], check=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        lat = json.loads((out / "latency.json").read_text())
        rows.append({"lm_weight": float(w), "penalty": float(pen), "beam": int(beam),
                     "wer": round(100 * corpus_counts(ref, read_kv(out / "text")).rate, 2), "rtf": lat["rtf"]})
    best = min(rows, key=lambda r: (r["wer"], r["rtf"]))
    res = {"model": args.model, "set": args.set, "rows": rows, "best": best, "command": command_line(),
           "date": datetime.date.today().isoformat()}
    lines = [f"# Chunk-by-chunk LM fusion tuned on `{args.set}`: `{args.model}`", "",
             f"Written by `{res['command']}` on {res['date']}; decodes chunk by chunk on one thread (RTF: "
             "other jobs may have shared the 2 cores).", "",
             "| lm_weight | penalty | beam | WER % | RTF |", "|---|---|---|---|---|"]
    lines += [f"| {r['lm_weight']} | {r['penalty']} | {r['beam']} | {r['wer']:.2f} | {r['rtf']:.3f} |"
              for r in sorted(rows, key=lambda r: (r["beam"], r["lm_weight"], r["penalty"]))]
    lines += ["", f"Best: lm_weight {best['lm_weight']}, penalty {best['penalty']}, beam {best['beam']} "
              f"({best['wer']:.2f}%).", ""]
    write_results(args.out_dir, "stream_lm_tuning", res, "\n".join(lines))


if __name__ == "__main__":
    main()
