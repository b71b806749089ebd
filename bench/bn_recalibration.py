#!/usr/bin/env python3
"""What BatchNorm recalibration is worth for Table A's supernet and models.

Usage:
    PYTHONPATH=. .venv/bin/python bench/bn_recalibration.py --dir .   # ~5 min on 2 cores
Needs the recipe's Table A models (run.sh stages 5, 8 and 9 under --dir).
Writes: bench/results/bn_recalibration.md and .json.

For each target sparsity s of Table A: the supernet's uniform sub-network at
s (``exp/asr_ctc_omni``) and the individually pruned model at s
(``exp/asr_ctc_prune<s>``), both from their ``valid.loss.ave.pth``, scored by
CTC greedy decoding on the whole dev set (the search's proxy; WER and CER)
(1) with the checkpoint's BatchNorm statistics and (2) after
:func:`espnet_omni.search.bn_calib.recalibrate_batchnorm` on
``--calibration_utts`` training utterances (spread over the training set),
and the seconds the recalibration took. The supernet's statistics are an
average over every sub-network it trained; an individual model's belong to
its one sparsity, so (2) should change it little.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
from omni_sparsity import cpu_model, write_results  # noqa: E402

from espnet_omni.search.bn_calib import DEFAULT_CALIBRATION_UTTS, kept_batchnorm_stats  # noqa: E402
from espnet_omni.search.subnet_eval import SubnetEvaluator, calibrate_subnet  # noqa: E402
from espnet_omni.scoring.tables import rel, rel_text  # noqa: E402
from espnet_omni.sparsity.subnet import SubnetConfig  # noqa: E402
from espnet_omni.tasks import OmniASRTask  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dir", required=True, help="the recipe's --dir (holds exp/ and dump/raw/)")
    p.add_argument("--omni", default="exp/asr_ctc_omni", help="supernet experiment (relative to --dir)")
    p.add_argument("--prune", default="exp/asr_ctc_prune{s}", help="individual model experiment pattern")
    p.add_argument("--targets", type=float, nargs="+", default=[0.5, 0.6, 0.7, 0.8, 0.9])
    p.add_argument("--model", default="valid.loss.ave.pth")
    p.add_argument("--dev", default="dump/raw/dev")
    p.add_argument("--train", default="dump/raw/train")
    p.add_argument("--calibration_utts", type=int, default=DEFAULT_CALIBRATION_UTTS)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out_dir", default=str(ROOT / "bench" / "results"))
    return p


def measure(exp: Path, s: float, args) -> dict:
    model, train_args = OmniASRTask.build_model_from_file(exp / "config.yaml", exp / args.model, "cpu")
    enc = model.encoder
    cfg = SubnetConfig.uniform(enc.prunable_layers(), s, enc.mask_spec)
    ev = SubnetEvaluator(model, Path(args.dir) / args.dev, train_args=train_args)
    out = {}
    with kept_batchnorm_stats(model):
        out["as_trained"] = {"wer": ev.error_counts(cfg, "word").rate, "cer": ev.error_counts(cfg, "char").rate}
        t0 = time.perf_counter()
        layers, utts = calibrate_subnet(model, train_args, cfg, Path(args.dir) / args.train, args.calibration_utts)
        out["calibration_seconds"] = time.perf_counter() - t0
        out["recalibrated"] = {"wer": ev.error_counts(cfg, "word").rate, "cer": ev.error_counts(cfg, "char").rate}
    out.update(layers=layers, utts=utts, dev_utts=ev.n_utts)
    return out


def main(cmd=None) -> None:
    args = get_parser().parse_args(cmd)
    torch.set_num_threads(args.threads)
    root = Path(args.dir)
    start, load_before = time.perf_counter(), os.getloadavg()
    # paths relative to the repository root: no machine path in bench/results
    argv = " ".join(cmd or sys.argv[1:])
    res = {"command": rel_text(f"PYTHONPATH=. .venv/bin/python bench/bn_recalibration.py {argv}"),
           "date": datetime.datetime.now().isoformat(timespec="seconds"), "cpu": cpu_model(),
           "threads": args.threads, "rows": []}
    for s in args.targets:
        for kind, exp in (("supernet, uniform sub-network", root / args.omni),
                          ("individually pruned", root / args.prune.format(s=s))):
            print(f"{s} {kind} ({exp}) ...", flush=True)
            res["rows"].append({"sparsity": s, "model": kind, "exp": rel(exp), **measure(exp, s, args)})
    res["seconds"] = time.perf_counter() - start
    res["load_before"], res["load_after"] = load_before, os.getloadavg()
    r0 = res["rows"][0]
    md = [
        "# BatchNorm recalibration of Table A's models",
        "",
        f"Command: `{res['command']}` ({res['date']}; {res['cpu']}; {args.threads} torch thread(s); "
        f"{res['seconds']:.0f} s; load average {load_before[0]:.2f} before, {res['load_after'][0]:.2f} after).",
        f"Dev set: {r0['dev_utts']} utterances, CTC greedy decoding of `{args.model}`. Recalibration: "
        f"{r0['utts']} training utterances, {r0['layers']} BatchNorm layers.",
        "",
        "| sparsity | model | dev WER % as trained | dev WER % recalibrated | dev CER % as trained "
        "| dev CER % recalibrated | recalibration s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        a, b = r["as_trained"], r["recalibrated"]
        md.append(f"| {r['sparsity']} | {r['model']} | {100 * a['wer']:.1f} | {100 * b['wer']:.1f} | "
                  f"{100 * a['cer']:.1f} | {100 * b['cer']:.1f} | {r['calibration_seconds']:.1f} |")
    write_results(Path(args.out_dir), "bn_recalibration", res, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
