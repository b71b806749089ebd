#!/usr/bin/env python3
"""Streams per machine: N concurrent real-time streams into the recognition server, per model.

Usage (after ./run.sh, from the recipe directory):
    PYTHONPATH=. .venv/bin/python bench/serve_load.py --dir . \
        [--models "dense frac0.3 frac0.4 frac0.5"] [--runtimes "onnx_int8 onnx"] [--seconds 60]
Writes: bench/results/serve_load.{json,md} (after every model: a stopped run loses nothing and
``--resume`` goes on with the rest) and the plot docs/serve_load.png; the ONNX exports (with
``lm.onnx``) under ``<supernet>/pareto/<model>/bench_serve/onnx`` (reused when there).

Per model and runtime, one server (``python -m espnet_omni.bin.serve --model_dir ...``, the
recipe's streaming decode config ``conf/decode_ctc_lm_stream.yaml``: prefix beam search with the
LM, endpointing on; ``--threads`` decoding workers, one ONNX Runtime thread each) is loaded with
N streams sent by this process (``espnet_omni.serve.client``), each fed at real time in 100-ms
messages, started at random offsets within the first message. A stream's audio is ``--seconds``
of the ``--set`` utterances one after another (0.4 s apart), each stream from another utterance.
A load of N **holds** when every stream ends with no error and no audio lost (the server decoded
every sample sent) and the 95th percentile of the partial latency (a message's send to its
partial's arrival: what the server adds beyond the audio itself) is <= ``--max_p95_ms``.
The largest N that holds is searched with ``--probe_seconds`` loads (doubling, then bisection)
and confirmed with a ``--seconds`` load; there every stream's text is checked against the
offline chunk-by-chunk decode of its audio (the same recognizer fed the whole recording).
Server CPU: its process's CPU seconds over the load's wall seconds (cores busy).

Models: the main job's Pareto exports, ``<supernet>/pareto/<name>``; a ``structured`` (or ``row``)
export is ONNX-exported as it is (physically smaller graphs), any other from its dense copy in
the supernet's config (the masks as zeros: the same graph size as the dense network's).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
from omni_sparsity import command_line, cpu_model, write_results  # noqa: E402

from espnet_omni.scoring.tables import rel  # noqa: E402
from espnet_omni.serve.client import ServerError, percentile, stream_audio  # noqa: E402

FS = 16000
CHUNK_MS = 100.0
RUNTIMES = {"onnx_int8": [], "onnx": ["--fp32"]}
DEFAULT_SUPERNET = "exp/asr_ctc_dual_omni"


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dir", type=Path, default=Path("."), help="the main job's directory (exp/, dump/)")
    p.add_argument("--supernet", default=DEFAULT_SUPERNET,
                   help="relative to --dir; another than the main job's (e.g. a structured supernet) is keyed by its name")
    p.add_argument("--lm", default="exp/lm_char", help="relative to --dir")
    p.add_argument("--lm_model", default="valid.loss.ave.pth")
    p.add_argument("--models", default="dense frac0.3 frac0.4 frac0.5", help="Pareto models of the main job")
    p.add_argument("--runtimes", default="onnx_int8", help=f"of {' '.join(RUNTIMES)}")
    p.add_argument("--fp32_models", default="dense frac0.5", help="the models also run with runtime onnx")
    p.add_argument("--set", default="test")
    p.add_argument("--decode_config", type=Path, default=ROOT / "conf" / "decode_ctc_lm_stream.yaml")
    p.add_argument("--threads", type=int, default=2, help="the server's decoding threads (per process)")
    p.add_argument("--workers", type=int, default=1, help="the server's processes (bin/serve --workers)")
    p.add_argument("--seconds", type=float, default=60.0, help="the confirming load's length")
    p.add_argument("--probe_seconds", type=float, default=20.0, help="the search's loads' length")
    p.add_argument("--max_p95_ms", type=float, default=300.0)
    p.add_argument("--start", type=int, default=8, help="the search's first N")
    p.add_argument("--max_n", type=int, default=256)
    p.add_argument("--resume", action="store_true", help="keep the models already in the results json")
    p.add_argument("--out_dir", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--plot", type=Path, default=ROOT / "docs" / "serve_load.png")
    p.add_argument("--render", action="store_true", help="measure nothing: the md and plot again from the json")
    return p


# ------------------------------------------------------------------ models
def onnx_export(args, name: str) -> tuple[Path, dict]:
    """The ONNX dir (with lm.onnx, int8 copies) of Pareto model ``name`` and what it is."""
    from espnet_omni.bin import export_onnx

    sup, lm = args.dir / args.supernet, args.dir / args.lm
    model_dir = sup / "pareto" / name
    report = model_dir / "export.json"
    if not report.is_file():
        sys.exit(f"error: {report} not found: run ./run.sh (stages 5-9) in --dir {args.dir} first")
    export = json.loads(report.read_text())
    fmt = export["format"]
    if fmt in ("structured", "row"):
        config, weights = model_dir / "config.yaml", model_dir / "model.pth"
    else:
        config, weights = sup / "config.yaml", model_dir / "dense" / "model.pth"
    for need in (config, weights, lm / "config.yaml", lm / args.lm_model):
        if not need.is_file():
            sys.exit(f"error: {need} not found: run ./run.sh (stages 5-9) in --dir {args.dir} first")
    out = model_dir / "bench_serve" / "onnx"
    if not (out / "lm.int8.onnx").is_file():
        export_onnx.main(["--asr_train_config", str(config), "--asr_model_file", str(weights), "--out_dir", str(out),
                          "--modes", "streaming", "--int8", "true", "--lm_train_config", str(lm / "config.yaml"),
                          "--lm_file", str(lm / args.lm_model)])
    sizes = {g: (out / f).stat().st_size for g, f in json.loads((out / "onnx.json").read_text())["graphs"].items()}
    return out, {"format": fmt, "exported_from": rel(weights), "graph_bytes": sizes,
                 "nonzero_params": export["nonzero_params"]}


def encoder_fraction(args, name: str) -> float | None:
    """The model's share of the dense encoder's parameters (the Pareto table's size column)."""
    if name == "dense":
        return 1.0
    if name.startswith("frac"):
        try:
            return float(name[4:])
        except ValueError:
            return None
    return None


# ------------------------------------------------------------------ audio
def stream_audios(args, n: int, seconds: float) -> list[np.ndarray]:
    """``n`` int16 recordings of ``seconds``: the set's utterances one after another with 0.4-s
    pauses, stream ``i`` starting at utterance ``i * step`` (wrapping)."""
    from espnet2.fileio.sound_scp import SoundScpReader

    cache = getattr(stream_audios, "_utts", None)
    if cache is None:
        reader = SoundScpReader(str(args.dir / "dump" / "raw" / args.set / "wav.scp"), dtype="int16")
        cache = stream_audios._utts = [np.asarray(reader[u][1], dtype=np.int16) for u in reader.keys()]
    gap = np.zeros(int(0.4 * FS), dtype=np.int16)
    pieces = [np.concatenate([u, gap]) for u in cache]
    step = max(1, len(pieces) // max(n, 1))
    want = int(seconds * FS)
    out = []
    for i in range(n):
        parts, total, j = [], 0, (i * step) % len(pieces)
        while total < want:
            parts.append(pieces[j])
            total += len(pieces[j])
            j = (j + 1) % len(pieces)
        out.append(np.concatenate(parts)[:want])
    return out


# ------------------------------------------------------------------ server
class ServerProcess:
    """``bin/serve`` in a process of its own; its CPU seconds from /proc."""

    def __init__(self, args, onnx_dir: Path, runtime: str):
        cmd = [sys.executable, "-m", "espnet_omni.bin.serve", "--model_dir", str(onnx_dir), *RUNTIMES[runtime],
               "--decode_config", str(args.decode_config), "--port", "0", "--threads", str(args.threads),
               "--num_threads", "1", "--max_streams", str(args.max_n + 1), "--idle_timeout", "60",
               "--workers", str(args.workers)]
        self.command = " ".join(rel(c) if c.startswith("/") else c for c in cmd[1:])
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        line = self.proc.stdout.readline()
        if not line.startswith("serving "):
            self.proc.kill()
            sys.exit(f"error: the server did not start: {self.command}")
        self.url = line.split()[1].rstrip("/")
        workers = line.split("workers:", 1)[1].strip(" )\n").split() if "workers:" in line else []
        self.pids = [self.proc.pid, *map(int, workers)]

    def cpu_seconds(self) -> float:
        """CPU seconds of the server's processes (the workers' too)."""
        total = 0
        for pid in self.pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def _load(url: str, audios: list[np.ndarray], seed: int) -> list:
    rng = random.Random(seed)

    async def one(audio):
        await asyncio.sleep(rng.uniform(0, CHUNK_MS / 1000.0))
        try:
            return await stream_audio(url, audio, FS, chunk_ms=CHUNK_MS, realtime=True, open_timeout=60)
        except ServerError as e:
            return e
    return await asyncio.gather(*(one(a) for a in audios))


def trial(args, server: ServerProcess, n: int, seconds: float) -> dict:
    """One load of ``n`` streams of ``seconds``."""
    audios = stream_audios(args, n, seconds)
    cpu0, t0 = server.cpu_seconds(), time.perf_counter()
    results = asyncio.run(_load(server.url, audios, seed=n))
    wall = time.perf_counter() - t0
    cpu = server.cpu_seconds() - cpu0
    errors = [str(r) for r in results if isinstance(r, Exception)]
    ok = [r for r in results if not isinstance(r, Exception)]
    lost = sum(abs(r.seconds - len(a) / FS) > 1e-3 for r, a in zip(results, audios) if not isinstance(r, Exception))
    lat = [x for r in ok for x in r.latencies_ms]
    p95 = percentile(lat, 95)
    out = {"streams": n, "seconds": seconds, "errors": len(errors), "lost_audio_streams": lost,
           "latency_ms_p50": round(percentile(lat, 50) or 0, 1), "latency_ms_p95": round(p95 or 0, 1),
           "latency_ms_max": round(max(lat) if lat else 0, 1), "server_cpu_cores": round(cpu / wall, 2),
           "wall_seconds": round(wall, 1)}
    out["holds"] = not errors and not lost and p95 is not None and p95 <= args.max_p95_ms
    if errors:
        out["first_error"] = errors[0][:200]
    out["_results"], out["_audios"] = results, audios
    print(f"  N={n:3d} {seconds:.0f}s: p95 {out['latency_ms_p95']:.0f} ms, cpu {out['server_cpu_cores']:.2f} cores, "
          f"errors {len(errors)}, lost {lost} -> {'holds' if out['holds'] else 'fails'}", flush=True)
    return out


def public(t: dict) -> dict:
    return {k: v for k, v in t.items() if not k.startswith("_")}


def offline_texts(args, onnx_dir: Path, runtime: str, audios: list[np.ndarray]) -> list[str]:
    """The offline chunk-by-chunk decode (the server's recognizer, fed each whole recording)."""
    from espnet_omni.bin import serve

    server = serve.build_server(serve.get_parser().parse_args(
        ["--model_dir", str(onnx_dir), *RUNTIMES[runtime], "--decode_config", str(args.decode_config)]))
    texts = []
    for audio in audios:
        stream = server.make_stream()
        stream.feed(audio.astype("<i2").tobytes())
        texts.append(stream.finish().text)
    return texts


def search(args, server: ServerProcess) -> tuple[dict, list[dict]]:
    """The largest N that holds: probes (doubling up, or halving down, from ``--start``; then
    bisection to 10 %), then a confirming ``--seconds`` load (a step down while it fails)."""
    probes = []

    def holds(n):
        t = trial(args, server, n, args.probe_seconds)
        probes.append(public(t))
        return t["holds"]

    n = min(args.start, args.max_n)
    if holds(n):
        lo, hi = n, args.max_n + 1
        while lo < args.max_n:
            n = min(2 * lo, args.max_n)
            if not holds(n):
                hi = n
                break
            lo = n
    else:
        lo, hi = 0, n
        while hi > 1:
            n = hi // 2
            if holds(n):
                lo = n
                break
            hi = n
    while hi - lo > max(1, lo // 10):
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if holds(mid) else (lo, mid)
    while lo > 0:
        t = trial(args, server, lo, args.seconds)
        if t["holds"]:
            return t, probes
        probes.append(public(t))
        lo -= max(1, lo // 10)
    return {"streams": 0, "holds": False}, probes


def procs(r: dict) -> str:
    w = r.get("workers", 1)
    return f", {w} processes" if w > 1 else ""


def markdown(res: dict) -> str:
    lines = ["# Concurrent real-time streams per model (the streaming server)", "",
             f"Written by `bench/serve_load.py` (the commands below) on {res['date']} ({res['cpu']}, {res['nproc']} cores; load average "
             f"before {res['load_average_before'][0]}). Server: `{re.sub(r'--workers [0-9]+', '--workers W', res['server'])}` "
             "(W: 1, or the row's processes); decode config "
             f"`{res['decode_config']}` (CTC prefix beam search + LM, endpointing). Each stream: real time, "
             f"{CHUNK_MS:.0f}-ms PCM16 messages, `{res['set']}` utterances one after another. A load holds with "
             f"no error, no audio lost and partial latency p95 <= {res['max_p95_ms']:.0f} ms beyond the audio; "
             f"the largest N found with {res['probe_seconds']:.0f}-s loads, confirmed with a {res['seconds']:.0f}-s "
             "load, where every stream's text is compared with its offline chunk-by-chunk decode.", "",
             "| supernet | model | encoder size | export | runtime | streams | streams / core | p50 / p95 / max ms | "
             "server CPU cores | texts = offline |", "|---|---|---|---|---|---|---|---|---|---|"]
    for key, r in res["models"].items():
        c = r["confirmed"]
        size = f"{r['encoder_fraction']:.2f}" if r.get("encoder_fraction") is not None else "?"
        lines.append(f"| {r['supernet']} | {r['model']} | {size} | {r['format']} | {r['runtime']}{procs(r)} | {c['streams']} | "
                     f"{c['streams'] / res['nproc']:.1f} | {c.get('latency_ms_p50', 0):.0f} / "
                     f"{c.get('latency_ms_p95', 0):.0f} / {c.get('latency_ms_max', 0):.0f} | "
                     f"{c.get('server_cpu_cores', 0):.2f} | {r.get('texts_equal_offline', '-')} |")
    lines += ["", "Targets: " + "; ".join(f"{t['target']}: {t['value']} ({'met' if t['met'] else '**missed**'})"
                                        for t in res["targets"]), ""]
    commands = list(dict.fromkeys(r["command"] for r in res["models"].values() if r.get("command")))
    lines += ["Rows by command:"] + [f"- `{c}`: " + ", ".join(f"`{k}`" for k, r in res["models"].items()
                                                           if r.get("command") == c) for c in commands] + [""]
    for key, r in res["models"].items():
        lines.append(f"- `{key}` probes (N: p95 ms, holds): " + ", ".join(
            f"{p['streams']}: {p['latency_ms_p95']:.0f}{'' if p['holds'] else ' x'}" for p in r["probes"]))
    return "\n".join(lines) + "\n"


def targets(res: dict) -> list[dict]:
    m = res["models"]
    out = []
    if "frac0.5/onnx_int8" in m:
        r = m["frac0.5/onnx_int8"]
        out.append({"target": ">= 16 streams, frac0.5 ONNX int8 + LM, texts = offline",
                    "value": f"{r['confirmed']['streams']} ({r.get('texts_equal_offline')})",
                    "met": r["confirmed"]["streams"] >= 16 and r.get("all_equal", False)})
    if "dense/onnx_int8" not in m:
        return out
    dense = m["dense/onnx_int8"]["confirmed"]["streams"]
    for tag in sorted({r["supernet"] for r in m.values()}):
        sizes = [r for r in m.values() if r["supernet"] == tag and r["runtime"] == "onnx_int8"
                 and r.get("workers", 1) == 1
                 and r.get("encoder_fraction") and r["encoder_fraction"] < 1]
        if sizes:
            sparsest = min(sizes, key=lambda r: r["encoder_fraction"])
            ratio = sparsest["confirmed"]["streams"] / max(dense, 1)
            out.append({"target": f"sparsest ({tag} {sparsest['model']}, {sparsest['format']} export) >= 1.5x the "
                        "dense network's streams (int8)", "value": f"{ratio:.2f}x", "met": ratio >= 1.5})
    return out


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    dense = [r for k, r in res["models"].items() if k.startswith("dense/")]
    kind = lambda r: (r["supernet"], r["runtime"], r.get("workers", 1))  # noqa: E731
    for tag, runtime, workers in sorted({kind(r) for r in res["models"].values()}):
        group = [r for r in res["models"].values() if kind(r) == (tag, runtime, workers)]
        group += [r for r in dense if kind(r)[1:] == (runtime, workers) and r not in group]  # the same dense net
        rows = sorted((r["encoder_fraction"], r["confirmed"]["streams"] / res["nproc"])
                      for r in group if r.get("encoder_fraction"))
        if rows:
            fmt = next(r["format"] for r in group if r["supernet"] == tag)
            ax.plot(*zip(*rows), marker="o", label=f"{fmt} export, {runtime}{procs({'workers': workers})}")
    ax.set_xlabel("encoder size (fraction of the dense encoder)")
    ax.set_ylabel("real-time streams per core")
    ax.set_title("Streaming server: streams per core", fontsize=10)
    ax.set_ylim(bottom=0)
    ax.set_xlim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main(cmd=None) -> None:
    args = get_parser().parse_args(cmd)
    known = args.out_dir / "serve_load.json"
    res = json.loads(known.read_text()) if args.resume and known.is_file() else {"models": {}}
    for row in res["models"].values():  # rows of an earlier run: the command that ran it wrote them
        row.setdefault("command", res.get("command"))
    if args.render:
        res = json.loads(known.read_text())
        write_results(args.out_dir, "serve_load", res, markdown(res))
        plot(res, args.plot)
        return
    res.update({"set": args.set, "decode_config": rel(args.decode_config), "seconds": args.seconds,
                "probe_seconds": args.probe_seconds, "max_p95_ms": args.max_p95_ms, "nproc": os.cpu_count(),
                "cpu": cpu_model(), "command": command_line(), "date": datetime.date.today().isoformat()})
    res.setdefault("load_average_before", [round(x, 2) for x in os.getloadavg()])
    runs = [(m, rt) for rt in args.runtimes.split() for m in args.models.split()]
    runs += [(m, "onnx") for m in args.fp32_models.split() if (m, "onnx") not in runs]
    for name, runtime in runs:
        tag = Path(args.supernet).name
        key = f"{name}/{runtime}" if args.supernet == DEFAULT_SUPERNET else f"{tag}:{name}/{runtime}"
        key += f"/workers{args.workers}" if args.workers > 1 else ""
        if key in res["models"]:
            print(f"{key}: in {rel(known)} already (--resume)")
            continue
        onnx_dir, info = onnx_export(args, name)
        print(f"{key}: {rel(onnx_dir)}", flush=True)
        server = ServerProcess(args, onnx_dir, runtime)
        res["server"] = server.command.replace(rel(onnx_dir), "<model>/bench_serve/onnx")
        try:
            confirmed, probes = search(args, server)
        finally:
            server.close()
        row = {"command": command_line(), "supernet": tag, "model": name, "runtime": runtime, "workers": args.workers, "encoder_fraction": encoder_fraction(args, name), **info,
               "onnx_dir": rel(onnx_dir), "confirmed": public(confirmed), "probes": probes}
        if confirmed.get("_results"):
            want = offline_texts(args, onnx_dir, runtime, confirmed["_audios"])
            same = sum(r.text == w for r, w in zip(confirmed["_results"], want))
            row["texts_equal_offline"] = f"{same}/{len(want)}"
            row["all_equal"] = same == len(want)
        res["models"][key] = row
        res["targets"] = targets(res)
        write_results(args.out_dir, "serve_load", res, markdown(res))
    res["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    res["targets"] = targets(res)
    write_results(args.out_dir, "serve_load", res, markdown(res))
    plot(res, args.plot)
    print(f"plot: {rel(args.plot)}")


if __name__ == "__main__":
    main()
