#!/usr/bin/env python3
"""wav2vec 2.0 pretraining on CPU: step time and peak memory, plain vs dual mode.

Usage (from the repository root, the recipe directory):
    PYTHONPATH=. .venv/bin/python bench/ssl_pretraining.py           # ~3 min on 2 cores
    PYTHONPATH=. .venv/bin/python bench/ssl_pretraining.py --quick   # smoke, < 1 min

Writes: bench/results/ssl_pretraining.md and .json (``--quick``:
``ssl_pretraining_quick.*``, git-ignored).

Measures, for the recipe's pretraining models (``conf/pretrain_w2v.yaml``
and ``conf/pretrain_w2v_dual.yaml``: 40-mel fbank, conv2d pre-encoder, 4
Conformer blocks x 144, wav2vec 2.0 loss with 2 x 64 codebook entries and 20
distractors), built through ``OmniSSLTask`` exactly as training builds them:
one optimizer step (forward + backward of every micro-step, grad clip, Adam)
on one batch of the size the recipe's ``batch_bins: 400000`` gives (8
utterances of 3.1 s of audio, ESPnet's SSL collate crops a batch to equal
length), at 1 and 2 torch threads. A dual-mode step is the dense full-context
micro-step plus the 70%-sparse streaming one. Peak memory is the peak
resident set size of a fresh process per case (model + optimizer + one
step), so the cases do not share a peak.

Timing does not depend on the audio, so the batch is random noise.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from omni_sparsity import command_line, cpu_model, write_results  # noqa: E402  (shared by the benchmarks)

CASES = {"plain": "conf/pretrain_w2v.yaml", "dual": "conf/pretrain_w2v_dual.yaml"}
N_UTTS, SECONDS, FS = 8, 3.125, 16000


def run_case(case: str, threads: int, warmup: int, repeats: int) -> dict:
    """One case in this process: build the model, time optimizer steps."""
    import numpy as np
    import torch

    from espnet_omni.sparsity.subnet import SubnetConfig
    from espnet_omni.tasks import OmniSSLTask
    from espnet_omni.train.supernet import SupernetConfig

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tokens, stats = Path(tmp) / "tokens.txt", Path(tmp) / "feats_stats.npz"
        tokens.write_text("<blank>\n<unk>\na\n<sos/eos>\n")
        np.savez(stats, count=np.array(10), sum=np.zeros(40), sum_square=np.full(40, 10.0))
        args = OmniSSLTask.get_parser().parse_args(
            ["--config", str(ROOT / CASES[case]), "--token_list", str(tokens), "--output_dir", tmp,
             "--normalize_conf", f"stats_file={stats}"])
        model = OmniSSLTask.build_model(args)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    speech = 0.1 * torch.randn(N_UTTS, int(SECONDS * FS))
    lens = torch.full((N_UTTS,), speech.shape[1])
    enc = model.encoder
    micro = [("full", None)]
    if case == "dual":
        cfg = SupernetConfig.from_dict(args.omni_conf)
        sparse = SubnetConfig.uniform(enc.prunable_layers(), cfg.dual_mode.streaming_sparsity, enc.mask_spec)
        micro.append(("streaming", sparse))

    def step() -> float:
        start = time.perf_counter()
        opt.zero_grad()
        for mode, sub in micro:
            enc.set_active_subnet(sub) if sub is not None else enc.set_max_net()
            enc.set_active_mode(mode)
            loss, _, _ = model(speech, lens)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        enc.set_max_net()
        enc.set_active_mode("full")
        return (time.perf_counter() - start) * 1e3

    for _ in range(warmup):
        step()
    ms = [step() for _ in range(repeats)]
    return {
        "case": case, "threads": threads, "median_ms": round(statistics.median(ms), 1),
        "min_ms": round(min(ms), 1), "n": len(ms),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
        "micro_steps": len(micro),
    }


def markdown(res: dict) -> str:
    m = res["meta"]
    lines = [
        "# wav2vec 2.0 pretraining on CPU (bench/ssl_pretraining.py)", "",
        f"Command: `{m['command']}`; {m['date']}; {m['cpu']}, {m['cores']} cores, torch {m['torch']}; "
        f"1-min load average {m['loadavg_1min'][0]} before, {m['loadavg_1min'][1]} after; {m['wall_s']} s.", "",
        f"One optimizer step on {N_UTTS} utterances x {SECONDS} s of audio (the recipe's batch_bins 400000). "
        "Peak RSS: a fresh process per case (model + Adam + the steps).", "",
        "| model | micro-steps | threads | step median ms | step min ms | s per epoch (2600 utts) | peak RSS MB |"
        " params M |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in res["cases"]:
        per_epoch = r["median_ms"] / 1e3 * 2600 / N_UTTS
        lines.append(f"| {CASES[r['case']]} | {r['micro_steps']} | {r['threads']} | {r['median_ms']} | {r['min_ms']} "
                     f"| {per_epoch:.0f} | {r['peak_rss_mb']} | {r['params_m']} |")
    lines += ["", "(s per epoch = step median x 2600 / 8: the default corpus' training set at this batch size; "
              "ESPnet's real batches vary in length and count.)"]
    return "\n".join(lines) + "\n"


def main(cmd=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="1 timed step (smoke run); writes *_quick.*")
    p.add_argument("--out_dir", default=str(ROOT / "bench" / "results"))
    p.add_argument("--case", choices=tuple(CASES), help=argparse.SUPPRESS)  # one case, JSON to stdout
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(cmd)
    warmup, repeats = (1, 1) if args.quick else (2, 6)
    if args.case:
        print(json.dumps(run_case(args.case, args.threads, warmup, repeats)))
        return
    start, load_before = time.perf_counter(), os.getloadavg()
    cases = []
    for threads in (1, 2):
        for case in CASES:
            print(f"{case}, {threads} thread(s) ...", flush=True)
            out = subprocess.run([sys.executable, __file__, "--case", case, "--threads", str(threads)]
                                 + (["--quick"] if args.quick else []),
                                 capture_output=True, text=True, check=True, cwd=ROOT,
                                 env={**os.environ, "PYTHONPATH": str(ROOT)})
            cases.append(json.loads(out.stdout.strip().splitlines()[-1]))
    import torch

    res = {"meta": {
        "command": command_line(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__, "quick": args.quick,
        "wall_s": round(time.perf_counter() - start, 1),
        "loadavg_1min": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }, "cases": cases}
    stem = "ssl_pretraining_quick" if args.quick else "ssl_pretraining"
    write_results(Path(args.out_dir), stem, res, markdown(res))


if __name__ == "__main__":
    main()
