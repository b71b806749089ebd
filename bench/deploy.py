#!/usr/bin/env python3
"""Deployment benchmark: sub-networks on PyTorch and ONNX Runtime, fp32 and int8, 1 and 2 threads.

Usage (after the dense model and the supernets exist, see below):
    PYTHONPATH=. .venv/bin/python bench/deploy.py            # ~15 min on 2 cores
    PYTHONPATH=. .venv/bin/python bench/deploy.py --quick    # smoke run, *_quick.* files
Writes: bench/results/deploy.json (a JSON list of records) and bench/results/deploy.md.

Models (``--dense_exp``, ``--group_exp``, ``--unstructured_exp``, the recipe's
experiments; a missing one is skipped and said so): the dense Conformer, and
the uniform sub-networks at ``--sparsities`` of the structured supernet
(``mask_granularity: group``, exported ``structured``: physically smaller) and
of the unstructured one (exported ``dense``: zeros, stock shapes). Each
sub-network's BatchNorm statistics are re-estimated on ``--calibration_utts``
training utterances before export, as ``bin/export --calibration_dir`` does.

Runtimes: ``torch`` runs :class:`~espnet_omni.export.onnx_export.FullContextGraph`
and :class:`~espnet_omni.export.onnx_export.StreamingChunkGraph` (the modules
the ONNX graphs are traced from) in PyTorch, int8 via ``torch.ao``'s dynamic
quantisation of every Linear; ``onnxruntime`` runs ``full.onnx`` /
``streaming.onnx`` and their dynamic int8 copies. Every configuration reads
the same fbank features (computed once: the front end is the same for all).

Figures per record: ``test_wer`` (CTC greedy, full context, every test
utterance), full-context RTF (encoder + CTC, one utterance at a time, on
``--timing_utts`` of them spread over the set), ``speedup_vs_dense_torch``
(dense PyTorch fp32 at the same threads, same run), streaming per-chunk
compute (chunks of ``--chunk_size`` frames, unlimited left context, on
``--timing_utts`` utterances: mean and p95 ms, and the streaming RTF), the
model's file size (``model.pth`` / ``.onnx``). The models were trained
full-context: streaming rows time the chunked computation; their WER is not
reported. Timing rounds interleave the configurations.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
from omni_sparsity import command_line, cpu_model, write_results  # noqa: E402

from espnet_omni.export import export_asr_model  # noqa: E402
from espnet_omni.export.onnx_export import (  # noqa: E402
    FullContextGraph,
    StreamingChunkGraph,
    export_onnx,
    initial_caches,
)
from espnet_omni.search.subnet_eval import calibrate_subnet  # noqa: E402
from espnet_omni.nets.chunk_config import StreamingConfig  # noqa: E402
from espnet_omni.scoring.tables import rel  # noqa: E402
from espnet_omni.corpus.datadir import read_kv  # noqa: E402
from espnet_omni.scoring.wer import corpus_counts  # noqa: E402
from espnet_omni.sparsity.subnet import SubnetConfig  # noqa: E402
from espnet_omni.tasks import OmniASRTask, as_omni_config  # noqa: E402

TARGETS = {"structured70_speedup": 2.5, "onnx_int8_stream_rtf": 0.01, "int8_wer_cost": 1.0}


def load(config: Path, weights: Path):
    model, args = OmniASRTask.build_model_from_file(as_omni_config(config), weights, "cpu")
    return model.eval(), args


def features(model, test_dir: Path) -> dict[str, torch.Tensor]:
    """fbank features (1, T, D) of every test utterance (before normalisation)."""
    from espnet2.fileio.sound_scp import SoundScpReader

    reader = SoundScpReader(str(test_dir / "wav.scp"), dtype="float32")
    out = {}
    with torch.no_grad():
        for utt in sorted(reader.keys()):
            fs, wav = reader[utt]
            x = torch.from_numpy(wav)[None]
            feats, _ = model.frontend(x, torch.tensor([x.size(1)]))
            out[utt] = feats
    return out


def greedy_text(logp: np.ndarray, tokens: list[str], blank: int = 0) -> str:
    ids = logp.argmax(-1)
    out, prev = [], -1
    for i in ids.tolist():
        if i != prev and i != blank:
            out.append(tokens[i])
        prev = i
    return "".join(" " if t == "<space>" else t for t in out).strip()


class Runner:
    """One (model, runtime, dtype) configuration: full-context and streaming callables."""

    def __init__(self, name, granularity, sparsity, runtime, dtype, model=None, onnx_dir=None, cfg=None):
        self.name, self.granularity, self.sparsity = name, granularity, sparsity
        self.runtime, self.dtype, self.bytes = runtime, dtype, 0
        self.cfg = cfg
        if runtime == "torch":
            self.full = FullContextGraph(model).eval()
            self.stream = StreamingChunkGraph(model, cfg).eval()
            if dtype == "int8":
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    q = torch.ao.quantization.quantize_dynamic
                    self.full = q(self.full, {torch.nn.Linear}, dtype=torch.qint8)
                    self.stream = q(self.stream, {torch.nn.Linear}, dtype=torch.qint8)
            self.stride, self.field = self.stream.stride, self.stream.field
            self.blocks = self.stream.cache_shapes()
        else:
            meta = json.loads((onnx_dir / "onnx.json").read_text())
            suffix = "_int8" if dtype == "int8" else ""
            self.files = {m: onnx_dir / meta["graphs"][m + suffix] for m in ("full", "streaming")}
            self.stride, self.field = meta["streaming"]["stride"], meta["streaming"]["field"]
            self.blocks = meta["streaming"]["blocks"]
            self._sessions: dict[int, dict] = {}  # threads -> the sessions made for them
            self.sessions = {}

    def set_threads(self, threads: int) -> None:
        torch.set_num_threads(threads)
        if self.runtime == "onnxruntime":
            if threads not in self._sessions:
                import onnxruntime as ort

                opts = ort.SessionOptions()
                opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
                self._sessions[threads] = {m: ort.InferenceSession(str(f), opts, providers=["CPUExecutionProvider"])
                                           for m, f in self.files.items()}
            self.sessions = self._sessions[threads]

    def full_logp(self, feats: torch.Tensor) -> np.ndarray:
        if self.runtime == "torch":
            with torch.inference_mode():
                return self.full(feats, torch.tensor([feats.size(1)]))[0][0].numpy()
        out = self.sessions["full"].run(None, {"feats": feats.numpy(),
                                               "feats_lengths": np.array([feats.size(1)])})
        return out[0][0]

    def stream_chunks(self, feats: torch.Tensor) -> list[float]:
        """Per-chunk compute ms of one utterance, chunk by chunk."""
        caches = initial_caches(self.blocks)
        if self.runtime == "onnxruntime":
            caches = [c.numpy() for c in caches]
            names = [i.name for i in self.sessions["streaming"].get_inputs()]
        n_total = (feats.size(1) - self.field) // self.stride + 1
        chunk, done, start, times = self.cfg.chunk_size, 0, 0, []
        while done < n_total:
            n = min(chunk, n_total - done)
            window = feats[:, start:start + (n - 1) * self.stride + self.field]
            t0 = time.perf_counter()
            if self.runtime == "torch":
                with torch.inference_mode():
                    out = self.stream(window, *caches)
            else:
                out = self.sessions["streaming"].run(None, dict(zip(names, [window.numpy(), *caches])))
            times.append((time.perf_counter() - t0) * 1e3)
            caches = list(out[1:])
            done, start = done + n, start + n * self.stride
        return times


def file_bytes(path: Path) -> int:
    return path.stat().st_size


def state_bytes(module: torch.nn.Module) -> int:
    """Size of ``module``'s state dict saved as ``model.pth``."""
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(module.state_dict(), Path(tmp) / "model.pth")
        return file_bytes(Path(tmp) / "model.pth")


def build_models(args, work: Path, log) -> list[tuple]:
    """(name, granularity, sparsity, torch model, model.pth) of every model benched."""
    out = []
    dense_exp = Path(args.dense_exp)
    model, _ = load(dense_exp / "config.yaml", dense_exp / args.checkpoint)
    out.append(("dense", "dense", 0.0, model, dense_exp / args.checkpoint))
    for gran, exp, fmt in (("structured", args.group_exp, "structured"),
                           ("unstructured", args.unstructured_exp, "dense")):
        exp = Path(exp) if exp else None
        if exp is None or not (exp / args.checkpoint).is_file():
            log(f"skipped {gran}: no {exp}/{args.checkpoint}")
            continue
        conf = yaml.safe_load((exp / "config.yaml").read_text())
        for s in args.sparsities:
            sup, sup_args = load(exp / "config.yaml", exp / args.checkpoint)
            subnet = SubnetConfig.uniform(sup.encoder.prunable_layers(), s, sup.encoder.mask_spec)
            calib = {}
            if args.calibration_dir:
                layers, utts = calibrate_subnet(sup, sup_args, subnet, args.calibration_dir, args.calibration_utts)
                calib = {"data_dir": args.calibration_dir, "utts": utts, "layers": layers}
            d = work / f"{gran}_{int(round(s * 100))}"
            export_asr_model(sup, conf, subnet, fmt, d, bn_calibration=calib)
            m, _ = load(d / "config.yaml", d / "model.pth")
            out.append((f"{gran} {int(round(s * 100))}%", gran, s, m, d / "model.pth"))
            log(f"exported {gran} {s}")
    return out


def main(cmd=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dense_exp", default="base/exp/asr_abl_base")
    p.add_argument("--group_exp", default="base/exp/asr_abl_base_omni_group")
    p.add_argument("--unstructured_exp", default="base/exp/asr_abl_base_omni")
    p.add_argument("--checkpoint", default="valid.loss.ave.pth")
    p.add_argument("--test_dir", default="base/dump/raw/test")
    p.add_argument("--calibration_dir", default="base/dump/raw/train")
    p.add_argument("--calibration_utts", type=int, default=200)
    p.add_argument("--sparsities", type=float, nargs="+", default=[0.5, 0.7, 0.9])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--timing_utts", type=int, default=30)
    p.add_argument("--chunk_size", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (median)")
    p.add_argument("--latency_budgets", type=float, nargs="*", default=[0.45, 0.6, 0.8],
                   help="ms budgets of the latency search, as fractions of the dense structured model's")
    p.add_argument("--dev_dir", default="base/dump/raw/dev", help="the latency search scores on it")
    p.add_argument("--search_utts", type=int, default=60)
    p.add_argument("--quick", action="store_true", help="5 test utterances, 1 round: a smoke run")
    p.add_argument("--out_dir", default=str(ROOT / "bench" / "results"))
    p.add_argument("--work", default="bench/scratch/deploy")
    args = p.parse_args(cmd)
    start = time.perf_counter()
    load_before = os.getloadavg()[0]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    notes = []

    def log(msg):
        print(msg, flush=True)
        notes.append(msg)

    models = build_models(args, work, log)
    test = Path(args.test_dir)
    refs = read_kv(test / "text")
    feats = features(models[0][3], test)
    if args.quick:
        feats = dict(list(feats.items())[:5])
        refs = {k: refs[k] for k in feats}
        args.rounds, args.timing_utts = 1, 3
    audio_s = {k: f.size(1) / 100.0 for k, f in feats.items()}  # hop 10 ms
    timing = sorted(feats)[:: max(1, len(feats) // args.timing_utts)][: args.timing_utts]
    cfg = StreamingConfig(chunk_size=args.chunk_size, left_chunks=-1)
    runners = []
    for name, gran, s, model, pth in models:
        odir = work / "onnx" / name.replace(" ", "_").replace("%", "")
        export_onnx(model, odir, cfg, int8=True, token_type="char")
        tokens = list(model.token_list)
        for runtime in ("torch", "onnxruntime"):
            for dtype in ("fp32", "int8"):
                r = Runner(name, gran, s, runtime, dtype, model=model, onnx_dir=odir, cfg=cfg)
                if runtime == "torch":  # int8: the runner's own quantised graph
                    r.bytes = file_bytes(pth) if dtype == "fp32" else state_bytes(r.full)
                else:
                    r.bytes = file_bytes(odir / ("full.int8.onnx" if dtype == "int8" else "full.onnx"))
                r.tokens, r.blank = tokens, int(model.blank_id)
                runners.append(r)
        log(f"ONNX of {name}: {odir}")
    for r in runners:  # WER: every test utterance, one thread, untimed
        r.set_threads(1)
        hyps = {u: greedy_text(r.full_logp(f), r.tokens, r.blank) for u, f in feats.items()}
        r.wer = round(100.0 * corpus_counts(refs, hyps).rate, 2)
        log(f"WER {r.name} {r.runtime} {r.dtype}: {r.wer} ({time.perf_counter() - start:.0f} s)")
    timing_audio = sum(audio_s[u] for u in timing)
    records = []
    for threads in args.threads:
        full_rtf = {id(r): [] for r in runners}
        stream_ms = {id(r): [] for r in runners}
        for rnd in range(args.rounds):
            for r in runners:  # interleaved: every configuration once per round
                r.set_threads(threads)
                r.full_logp(feats[timing[0]])  # warm
                t0 = time.perf_counter()
                for utt in timing:
                    r.full_logp(feats[utt])
                full_rtf[id(r)].append((time.perf_counter() - t0) / timing_audio)
                chunks = []
                for utt in timing:
                    chunks += r.stream_chunks(feats[utt])
                stream_ms[id(r)].append(chunks)
            log(f"threads {threads} round {rnd + 1}/{args.rounds} ({time.perf_counter() - start:.0f} s)")
        dense_rtf = statistics.median(full_rtf[id(runners[0])])
        for r in runners:
            rtf = statistics.median(full_rtf[id(r)])
            all_chunks = [c for x in stream_ms[id(r)] for c in x]
            stream_rtf = statistics.median(sum(x) / 1e3 / timing_audio for x in stream_ms[id(r)])
            records.append({
                "model": r.name, "granularity": r.granularity, "sparsity": r.sparsity,
                "runtime": r.runtime, "dtype": r.dtype, "threads": threads, "rtf": round(rtf, 5),
                "speedup_vs_dense_torch": round(dense_rtf / rtf, 3), "bytes": r.bytes,
                "test_wer": r.wer, "stream_chunk_ms_mean": round(statistics.mean(all_chunks), 3),
                "stream_chunk_ms_p95": round(float(np.percentile(all_chunks, 95)), 3),
                "stream_rtf": round(stream_rtf, 5)})
    latency = latency_search(args, work, log) if args.latency_budgets else []
    targets = check_targets(records, latency)
    meta = {"command": command_line(), "date": datetime.datetime.now(datetime.timezone.utc).strftime(
                "%Y-%m-%d %H:%M UTC"), "cpu": cpu_model(), "cores": os.cpu_count(),
            "torch": torch.__version__, "onnxruntime": __import__("onnxruntime").__version__,
            "quick": args.quick, "test_dir": rel(test), "test_utts": len(feats), "timing_utts": len(timing),
            "rounds": args.rounds, "chunk_size": args.chunk_size, "notes": notes, "latency_search": latency,
            "wall_s": round(time.perf_counter() - start, 1),
            "loadavg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "models": {"dense": rel(Path(args.dense_exp)), "structured": rel(Path(args.group_exp)),
                       "unstructured": rel(Path(args.unstructured_exp))}}
    stem = "deploy_quick" if args.quick else "deploy"
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}_meta.json").write_text(json.dumps({**meta, "targets": targets}, indent=2) + "\n")
    write_results(out, stem, records, markdown(records, meta, targets))


def latency_search(args, work: Path, log) -> list[dict]:
    """Search the structured supernet under ms budgets, then time each pick directly."""
    from espnet_omni.bin.search import trained_space
    from espnet_omni.evolutionary_search import EvolutionConfig
    from espnet_omni.search import latency_table
    from espnet_omni.search.subnet_search import SubnetSearchConfig, search_subnets

    exp = Path(args.group_exp)
    if not (exp / args.checkpoint).is_file():
        log(f"skipped the latency search: no {exp}/{args.checkpoint}")
        return []
    sup, sup_args = load(exp / "config.yaml", exp / args.checkpoint)
    space = trained_space(exp / "config.yaml")
    choices = tuple(space.get("choices") or (0.5, 0.7, 0.9))
    out = work / "latency_search"
    table = latency_table.load_or_measure(out / "latency_table.json", sup, vars(sup_args),
                                          sup.encoder.prunable_layers(), choices)
    fastest = latency_table.predict_ms(table, dict.fromkeys(table["table"], max(choices)))
    budgets = [round(f * table["dense"], 3) for f in args.latency_budgets]
    for b in [b for b in budgets if b < fastest]:
        log(f"latency budget {b} ms/s skipped: below the fastest sub-network ({fastest:.3f})")
    budgets = [b for b in budgets if b >= fastest]
    if not budgets:
        return []
    evo = EvolutionConfig(population=8 if not args.quick else 3, generations=4 if not args.quick else 1,
                          seed=0, progress=False)
    config = SubnetSearchConfig(budgets=budgets, budget_unit="ms", metric="wer", choices=choices,
                                tie=space.get("tie", "per_layer"), evolution=evo,
                                max_utts=args.search_utts if not args.quick else 5)
    summary = search_subnets(sup, sup_args, args.dev_dir, out, config)
    rows = []
    for res in summary.results:
        picked = dict(zip(summary.dimensions, res.sparsities))
        measured = latency_table.time_subnet(sup, vars(sup_args), picked, repeats=9)
        rows.append({"budget_ms": res.budget, "budget_fraction_of_dense": round(res.budget / table["dense"], 3),
                     "predicted_ms": round(res.cost, 4), "measured_ms": round(measured, 4),
                     "error_pct": round(100 * (measured / res.cost - 1), 2),
                     "over_budget_pct": round(100 * (measured / res.budget - 1), 2),
                     "dev_wer": round(100 * res.score, 2), "params_fraction": round(res.fraction, 3)})
        log(f"latency budget {res.budget} ms: predicted {res.cost:.3f}, measured {measured:.3f}")
    return rows


def check_targets(records: list[dict], latency: list[dict]) -> list[dict]:
    out = []
    for r in latency:
        out.append({"target": f"latency search within 10% of its budget ({r['budget_ms']} ms/s, picks timed directly)",
                    "value": f"{r['measured_ms']} ms/s ({r['over_budget_pct']:+.1f}% vs budget)",
                    "met": r["over_budget_pct"] <= 10.0})
    for r in records:
        if (r["granularity"], r["sparsity"], r["runtime"], r["dtype"], r["threads"]) == (
                "structured", 0.7, "torch", "fp32", 1):
            out.append({"target": f"70% structured >= {TARGETS['structured70_speedup']}x dense PyTorch, 1 thread",
                        "value": f"{r['speedup_vs_dense_torch']}x", "met": r["speedup_vs_dense_torch"] >= 2.5})
    ort_int8 = [r for r in records if r["runtime"] == "onnxruntime" and r["dtype"] == "int8" and r["threads"] == 1]
    for r in ort_int8:
        out.append({"target": f"ONNX int8 streaming RTF <= {TARGETS['onnx_int8_stream_rtf']} ({r['model']}, 1 thread)",
                    "value": str(r["stream_rtf"]), "met": r["stream_rtf"] <= TARGETS["onnx_int8_stream_rtf"]})
        fp = next(x for x in records if x["model"] == r["model"] and x["runtime"] == "onnxruntime"
                  and x["dtype"] == "fp32" and x["threads"] == 1)
        cost = round(r["test_wer"] - fp["test_wer"], 2)
        out.append({"target": f"int8 WER cost <= {TARGETS['int8_wer_cost']} point ({r['model']}, ONNX)",
                    "value": f"{cost:+.2f}", "met": cost <= TARGETS["int8_wer_cost"]})
    return out


def markdown(records: list[dict], meta: dict, targets: list[dict]) -> str:
    quick = " (QUICK smoke run: not meaningful)" if meta["quick"] else ""
    md = [f"# Deployment benchmark{quick}", "",
          f"- command: `{meta['command']}`",
          f"- date: {meta['date']}; {meta['wall_s']} s; load average before / after: "
          f"{meta['loadavg_1min'][0]} / {meta['loadavg_1min'][1]}",
          f"- CPU: {meta['cpu']} ({meta['cores']} cores); torch {meta['torch']}, onnxruntime {meta['onnxruntime']}",
          f"- test set `{meta['test_dir']}`: {meta['test_utts']} utterances (WER, CTC greedy, full context); "
          f"{meta['timing_utts']} of them timed (full-context RTF and streaming); "
          f"{meta['rounds']} interleaved rounds, medians",
          f"- streaming: chunks of {meta['chunk_size']} encoder frames, unlimited left context, caches as "
          "tensors (the models were trained full-context: chunk compute only, no streaming WER)",
          f"- models: {meta['models']}", ""]
    md += [f"- {n}" for n in meta["notes"] if n.startswith("skipped")]
    md.append("")
    header = ["model", "runtime", "dtype", "threads", "RTF", "speed-up vs dense torch", "MB",
              "test WER", "chunk ms mean", "chunk ms p95", "streaming RTF"]
    md += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in records:
        md.append("| " + " | ".join(str(x) for x in (
            r["model"], r["runtime"], r["dtype"], r["threads"], r["rtf"], r["speedup_vs_dense_torch"],
            round(r["bytes"] / 1e6, 2), r["test_wer"], r["stream_chunk_ms_mean"], r["stream_chunk_ms_p95"],
            r["stream_rtf"])) + " |")
    if meta.get("latency_search"):
        md += ["", "## Latency search", "",
               "`--budget_unit ms` on the structured supernet (encoder + CTC ms per second of audio, one "
               "thread, predicted by the latency table), each pick then exported and timed directly:", "",
               "| budget ms/s | of dense | predicted | measured | error % | vs budget % | dev WER | params |",
               "|---|---|---|---|---|---|---|---|"]
        md += [f"| {r['budget_ms']} | {r['budget_fraction_of_dense']} | {r['predicted_ms']} | {r['measured_ms']} | "
               f"{r['error_pct']:+.1f} | {r['over_budget_pct']:+.1f} | {r['dev_wer']} | {r['params_fraction']} |"
               for r in meta["latency_search"]]
    md += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    md += [f"| {t['target']} | {t['value']} | {'yes' if t['met'] else '**no**'} |" for t in targets]
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    main()
