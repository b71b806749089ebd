"""Decode a Kaldi data dir chunk by chunk; write ``text`` and ``latency.json``.

The library side of ``python -m espnet_omni.bin.asr_inference_streaming``.
Audio is fed one encoder chunk of samples at a time, as a live source would
deliver it; compute is timed on the threads torch has (the entry sets one).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Union

import numpy as np
import torch

from espnet2.fileio.sound_scp import SoundScpReader
from espnet_omni.inference.streaming import StreamingRecognizer


def decode_data_dir(rec: StreamingRecognizer, data_dir: Union[str, Path],
                    output_dir: Union[str, Path]) -> dict:
    """Decode ``data_dir/wav.scp``; writes ``output_dir/{text,latency.json}``.

    Returns the ``latency.json`` content: real-time factor (compute / audio
    duration), per-chunk compute ms (mean, max), the algorithmic latency and
    its parts, the config and the thread count.
    """
    data_dir, output_dir = Path(data_dir), Path(output_dir)
    scp = data_dir / "wav.scp"
    if not scp.is_file():
        raise FileNotFoundError(f"{scp} not found (a Kaldi data dir needs wav.scp)")
    output_dir.mkdir(parents=True, exist_ok=True)
    reader = SoundScpReader(str(scp), dtype="float32")
    step = rec.chunk_samples()
    lines, chunk_ms = [], []
    audio_s = compute_s = 0.0
    for utt in sorted(reader.keys()):
        fs, wav = reader[utt]
        rec.reset()
        tic = time.perf_counter()
        for start in range(0, wav.shape[0], step):
            rec.feed(wav[start : start + step], fs=fs)
        text = rec.finish()
        compute_s += time.perf_counter() - tic
        audio_s += wav.shape[0] / fs
        chunk_ms += rec.chunk_ms
        lines.append(f"{utt} {text}".rstrip() + "\n")
    (output_dir / "text").write_text("".join(lines))
    lat = rec.latency()
    report = {
        "num_utterances": len(lines),
        "audio_seconds": round(audio_s, 3),
        "compute_seconds": round(compute_s, 3),
        "rtf": round(compute_s / audio_s, 4) if audio_s else None,
        "num_threads": torch.get_num_threads(),
        "num_chunks": len(chunk_ms),
        "chunk_compute_ms_mean": round(float(np.mean(chunk_ms)), 3) if chunk_ms else None,
        "chunk_compute_ms_max": round(float(np.max(chunk_ms)), 3) if chunk_ms else None,
        "algorithmic_latency_ms": round(lat.total_ms, 3),
        "latency_parts_ms": {
            "chunk": round(lat.chunk_ms, 3),
            "lookahead": round(lat.lookahead_ms, 3),
            "frontend": round(lat.frontend_ms, 3),
        },
        "streaming": rec.cfg.to_dict(),
        "beam_size": rec.beam_size,
    }
    (output_dir / "latency.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
