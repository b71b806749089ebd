#!/usr/bin/env python3
"""Streaming with the LM in both runtimes: one Pareto model decoded chunk by chunk by PyTorch and
ONNX Runtime (fp32, int8), the LM fused per chunk; WER, RTF, compute per chunk, first partial.

Usage (after ./run.sh, from the recipe directory):
    PYTHONPATH=. .venv/bin/python bench/stream_lm.py --dir . --model frac0.5 [--set test] [--num_threads 1]
Writes: bench/results/stream_lm.md and .json (``--out_dir`` changes the folder); the ONNX export
(with ``lm.onnx``) and the decodes under ``<supernet>/pareto/<model>/bench_stream_lm/``.

The model is the main job's export ``exp/asr_ctc_dual_omni/pareto/<model>/dense/model.pth`` in the
supernet's config (as run.sh stage 10 streams it), decoded with the recipe's inference config
(``conf/decode_ctc_lm_stream.yaml``, run.sh stage 10's: beam, LM weight, length bonus) and LM (``exp/lm_char``):

* ``pytorch``: ``StreamingRecognizer`` + ``TorchLM``;
* ``onnx``, ``onnx_int8``: ``bin/export_onnx --lm_train_config --lm_file --int8 true`` of the same
  weights, then ``OnnxStreamingRecognizer`` + ``OnnxLM`` over ``streaming[.int8].onnx`` and
  ``lm[.int8].onnx``.

Each is timed alone on ``--num_threads`` threads, model loading excluded (decode_data_dir times the
feed/finish calls only). Also reported: how many utterances' texts ONNX fp32 shares with PyTorch.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
from omni_sparsity import command_line, cpu_model, write_results  # noqa: E402

from espnet_omni.bin import export_onnx  # noqa: E402
from espnet_omni.bin.asr_inference_streaming import search_options  # noqa: E402
from espnet_omni.inference.decode_data_dir import decode_data_dir  # noqa: E402
from espnet_omni.inference.onnx_recognizer import OnnxStreamingRecognizer  # noqa: E402
from espnet_omni.inference.streaming_recognizer import StreamingRecognizer  # noqa: E402
from espnet_omni.corpus.datadir import read_kv  # noqa: E402
from espnet_omni.scoring.tables import rel  # noqa: E402
from espnet_omni.scoring.wer import corpus_counts  # noqa: E402

KEYS = ("rtf", "chunk_compute_ms_p50", "chunk_compute_ms_p95", "chunk_compute_ms_max",
        "first_partial_ms_p50", "first_partial_ms_p95", "algorithmic_latency_ms", "beam_size", "lm_weight",
        "length_bonus", "num_utterances", "audio_seconds")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dir", type=Path, default=Path("."), help="the main job's directory (exp/, dump/)")
    p.add_argument("--supernet", default="exp/asr_ctc_dual_omni", help="relative to --dir")
    p.add_argument("--lm", default="exp/lm_char", help="relative to --dir")
    p.add_argument("--lm_model", default="valid.loss.ave.pth")
    p.add_argument("--model", default="frac0.5", help="a Pareto model of the main job")
    p.add_argument("--set", default="test")
    p.add_argument("--decode_config", type=Path, default=ROOT / "conf" / "decode_ctc_lm_stream.yaml")
    p.add_argument("--num_threads", type=int, default=1)
    p.add_argument("--out_dir", type=Path, default=ROOT / "bench" / "results")
    return p


def main(cmd=None) -> None:
    args = get_parser().parse_args(cmd)
    torch.set_num_threads(args.num_threads)
    sup, lm = args.dir / args.supernet, args.dir / args.lm
    model = sup / "pareto" / args.model / "dense" / "model.pth"
    for need in (sup / "config.yaml", model, lm / "config.yaml", lm / args.lm_model):
        if not need.is_file():
            sys.exit(f"error: {need} not found: run ./run.sh (stages 5-9) in --dir {args.dir} first")
    work = sup / "pareto" / args.model / "bench_stream_lm"
    onnx_dir = work / "onnx"
    lm_opts = ["--lm_train_config", str(lm / "config.yaml"), "--lm_file", str(lm / args.lm_model)]
    if not (onnx_dir / "lm.int8.onnx").is_file():
        export_onnx.main(["--asr_train_config", str(sup / "config.yaml"), "--asr_model_file", str(model),
                          "--out_dir", str(onnx_dir), "--int8", "true", *lm_opts])
    opts = search_options(str(args.decode_config), lm_given=True)
    data = args.dir / "dump" / "raw" / args.set
    ref = read_kv(data / "text")
    load_before = os.getloadavg()
    res = {"model": args.model, "set": args.set, "search": opts, "runtimes": {}}
    texts = {}
    for name in ("pytorch", "onnx", "onnx_int8"):
        if name == "pytorch":
            rec = StreamingRecognizer.from_files(
                sup / "config.yaml", model, beam_size=opts["beam_size"], lm_train_config=lm / "config.yaml",
                lm_file=lm / args.lm_model, lm_weight=opts["lm_weight"], length_bonus=opts["penalty"])
        else:
            rec = OnnxStreamingRecognizer(onnx_dir, beam_size=opts["beam_size"], threads=args.num_threads,
                                          int8=name == "onnx_int8", lm_weight=opts["lm_weight"],
                                          length_bonus=opts["penalty"])
        print(f"decoding {args.set} with {name} ...", flush=True)
        lat = decode_data_dir(rec, data, work / name)
        texts[name] = read_kv(work / name / "text")
        counts = corpus_counts(ref, texts[name])
        res["runtimes"][name] = {"wer": round(100 * counts.rate, 2), **{k: lat.get(k) for k in KEYS}}
    same = sum(texts["onnx"].get(u) == texts["pytorch"].get(u) for u in ref)
    res["onnx_fp32_texts_equal_pytorch"] = f"{same}/{len(ref)}"
    res["load_average_before"] = [round(x, 2) for x in load_before]
    res["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    res["command"] = command_line()
    res["date"] = datetime.date.today().isoformat()
    res["cpu"] = cpu_model()
    lines = [f"# Streaming with the LM in both runtimes: `{args.model}` on `{args.set}`", "",
             f"Written by `{res['command']}` on {res['date']} ({res['cpu']}, {args.num_threads} thread(s); "
             f"load average before/after {res['load_average_before'][0]} / {res['load_average_after'][0]}). "
             f"Model: `{rel(model)}` in `{rel(sup / 'config.yaml')}`; LM `{rel(lm)}`; search "
             f"beam {opts['beam_size']}, lm_weight {opts['lm_weight']}, length bonus {opts['penalty']} "
             f"(`{rel(args.decode_config)}`). Chunk by chunk, model loading excluded.", "",
             "| runtime | WER % | RTF | chunk ms p50 / p95 / max | first partial ms p50 / p95 | latency ms |",
             "|---|---|---|---|---|---|"]
    for name, r in res["runtimes"].items():
        lines.append(f"| {name} | {r['wer']:.1f} | {r['rtf']:.3f} | {r['chunk_compute_ms_p50']:.1f} / "
                     f"{r['chunk_compute_ms_p95']:.1f} / {r['chunk_compute_ms_max']:.1f} | "
                     f"{r['first_partial_ms_p50']:.0f} / {r['first_partial_ms_p95']:.0f} | "
                     f"{r['algorithmic_latency_ms']:.0f} |")
    lines += ["", f"ONNX fp32 texts equal to PyTorch's: {res['onnx_fp32_texts_equal_pytorch']} utterances.", ""]
    write_results(args.out_dir, "stream_lm", res, "\n".join(lines))


if __name__ == "__main__":
    main()
