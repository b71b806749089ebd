#!/usr/bin/env python3
"""What the RNN-T head costs on CPU: one training step, CTC vs transducer.

Usage (from the repository root, the recipe directory):
    PYTHONPATH=. .venv/bin/python bench/transducer.py            # ~1 min
Writes: bench/results/transducer.md and .json.

The recipe's model (``conf/train_asr_omni.yaml``'s encoder: 4 Conformer
blocks x 144 on 40 mels, as ``omni_conformer``) with (a) its CTC head and (b)
``model: transducer_torchaudio``: a 1-layer LSTM prediction network (256), a
256-d joint network and ``torchaudio.functional.rnnt_loss``, plus CTC at
weight 0.3 (ESPnet's usual transducer recipe). One step = forward + backward
+ Adam on 8 utterances of 3 s (random features; ~14 characters per second
of targets, 30 tokens). Timed on one torch thread as CPU time of this process
(``time.process_time``), which other processes on the machine disturb less
than wall time; median of the timed steps.
"""

from __future__ import annotations

import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from omni_sparsity import command_line, cpu_model, write_results  # noqa: E402

from espnet_omni.tasks import OmniASRTask  # noqa: E402

N, SECONDS, CHARS_PER_S, VOCAB = 8, 3.0, 14, 30
HEADS = {
    "CTC (the recipe's head)": ["--model_conf", "{ctc_weight: 1.0}"],
    "RNN-T (transducer_torchaudio, LSTM 256, joint 256) + 0.3 CTC": [
        "--model", "transducer_torchaudio", "--model_conf", "{ctc_weight: 0.3}",
        "--decoder", "transducer", "--decoder_conf", "{rnn_type: lstm, num_layers: 1, hidden_size: 256}",
        "--joint_net_conf", "{joint_space_size: 256}"],
}


def build(extra: list[str], tmp: Path):
    conf = yaml.safe_load((ROOT / "conf/train_asr_omni.yaml").read_text())
    tokens = tmp / "tokens.txt"
    tokens.write_text("\n".join(["<blank>"] + [f"t{i}" for i in range(VOCAB - 2)] + ["<sos/eos>"]) + "\n")
    stats = tmp / "stats.npz"
    np.savez(stats, count=np.array(10), sum=np.zeros(40), sum_square=np.full(40, 10.0))
    args = OmniASRTask.get_parser().parse_args(
        ["--token_list", str(tokens), "--output_dir", str(tmp), "--normalize", "global_mvn",
         "--normalize_conf", f"stats_file={stats}", "--encoder", "omni_conformer",
         "--encoder_conf", json.dumps(conf["encoder_conf"]), "--frontend_conf", json.dumps(conf["frontend_conf"])]
        + extra)
    return OmniASRTask.build_model(args)


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    speech = 0.1 * torch.randn(N, int(SECONDS * 16000), generator=g)
    lens = torch.full((N,), speech.shape[1])
    u = int(SECONDS * CHARS_PER_S)
    text = torch.randint(1, VOCAB - 1, (N, u), generator=g)
    text_lens = torch.full((N,), u)
    rows, start = [], time.perf_counter()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in HEADS.items():
            model = build(extra, Path(tmp)).train()
            opt = torch.optim.Adam(model.parameters(), 1e-3)

            def step() -> float:
                t0 = time.process_time()
                opt.zero_grad()
                loss, _, _ = model(speech, lens, text, text_lens)
                loss.backward()
                opt.step()
                return (time.process_time() - t0) * 1e3

            step()
            ms = [step() for _ in range(5)]
            rows.append({"head": name, "cpu_ms_median": round(statistics.median(ms), 1),
                         "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3)})
    ctc = rows[0]["cpu_ms_median"]
    res = {"meta": {"command": command_line(),
                    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                    "cpu": cpu_model(), "torch": torch.__version__, "wall_s": round(time.perf_counter() - start, 1),
                    "loadavg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}, "rows": rows}
    md = ["# RNN-T vs CTC training step on CPU (bench/transducer.py)", "",
          f"Command: `{res['meta']['command']}`; {res['meta']['date']}; {res['meta']['cpu']}; torch "
          f"{res['meta']['torch']}; 1-min load average {res['meta']['loadavg_1min']}.", "",
          f"One step (forward + backward + Adam), {N} utterances x {SECONDS} s, {u} target tokens each, vocabulary "
          f"{VOCAB}, one thread, CPU ms (median of 5).", "",
          "| head | CPU ms per step | vs CTC | params M |", "|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['head']} | {r['cpu_ms_median']} | {r['cpu_ms_median'] / ctc:.2f}x | {r['params_m']} |")
    write_results(ROOT / "bench" / "results", "transducer", res, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
