#!/usr/bin/env python3
"""Endpointing on a long recording: N utterances joined by pauses, cut back into segments.

Usage:
    PYTHONPATH=. .venv/bin/python bench/endpoint.py \
        --asr_train_config exp/asr/config.yaml --asr_model_file exp/asr/valid.loss.ave.pth \
        [--subnet subnet.yaml] [--lm_train_config exp/lm/config.yaml --lm_file exp/lm/valid.loss.ave.pth \
         --decode_config conf/decode_ctc_lm.yaml] --data_dir dump/raw/test --num 10 --pause 0.8 \
        [--chunk_size 16 --left_chunks -1 --lookahead 0] [--endpoint_conf rule2_min_trailing_silence=0.6]
Writes: bench/results/endpoint.md and .json (``--out_dir`` changes the folder).

The first ``--num`` utterances of ``--data_dir`` (sorted by id, as the decoder
reads them) are joined into one recording with ``--pause`` seconds between
them (low noise, ``--pause_noise`` standard deviation: digital zeros are
nothing a recording holds), decoded chunk by chunk by the streaming recognizer
(``inference/decode_data_dir.py``, as ``bin/asr_inference_streaming`` does)
three ways:

* ``one by one``: each utterance alone (what the usual scoring measures);
* ``joined, endpointing``: the recording cut at endpoints
  (``inference/segmenter.SegmentingRecognizer``, ``--endpoint_conf`` rules), the
  recognizer reset at each cut;
* ``joined, no endpointing``: the recording as one utterance (no reset).

Reported: the number of segments, where the cuts fall (inside an inserted
pause, else how far from the nearest one), and the WER/CER of each way against
the reference (the utterances' texts joined by spaces for the joined
recording: the same words), with ``espnet_omni/scoring/wer.py``; the
real-time factor of each decode on ``--num_threads`` threads.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import soundfile
import torch
from espnet2.fileio.sound_scp import SoundScpReader
from espnet2.utils.nested_dict_action import NestedDictAction

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
from omni_sparsity import command_line, cpu_model, write_results  # noqa: E402

from espnet_omni.bin.asr_inference_streaming import build_recognizer  # noqa: E402
from espnet_omni.inference.decode_data_dir import decode_data_dir  # noqa: E402
from espnet_omni.inference.endpoint import EndpointConfig  # noqa: E402
from espnet_omni.corpus.datadir import read_kv  # noqa: E402
from espnet_omni.scoring.tables import rel  # noqa: E402
from espnet_omni.scoring.wer import char_counts, corpus_counts  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--asr_train_config", required=True)
    p.add_argument("--asr_model_file", required=True)
    p.add_argument("--subnet", default=None, help="SubnetConfig YAML to activate on a supernet encoder")
    p.add_argument("--lm_train_config", default=None)
    p.add_argument("--lm_file", default=None)
    p.add_argument("--decode_config", default=None, help="ESPnet inference YAML: beam_size, lm_weight, penalty")
    p.add_argument("--data_dir", required=True, help="Kaldi data dir with wav.scp and text")
    p.add_argument("--num", type=int, default=10, help="utterances to join")
    p.add_argument("--pause", type=float, default=0.8, help="seconds between two utterances")
    p.add_argument("--pause_noise", type=float, default=1e-3,
                   help="standard deviation of the pauses' Gaussian noise (1e-3: about -60 dBFS); 0 = zeros")
    p.add_argument("--chunk_size", type=int, default=None)
    p.add_argument("--left_chunks", type=int, default=None)
    p.add_argument("--lookahead", type=int, default=None)
    p.add_argument("--endpoint_conf", action=NestedDictAction, default=dict(),
                   help="endpoint rules, key=value (inference/endpoint.EndpointConfig)")
    p.add_argument("--num_threads", type=int, default=1)
    p.add_argument("--out_dir", default=str(ROOT / "bench" / "results"))
    return p


def select(data_dir: Path, num: int):
    """(utts, {utt: path}, {utt: reference}) of the first ``num`` utterances; exits naming the file."""
    scp, text = data_dir / "wav.scp", data_dir / "text"
    for f in (scp, text):
        if not f.is_file():
            sys.exit(f"error: --data_dir {data_dir}: no {f.name}")
    reader = SoundScpReader(str(scp), dtype="float32")
    utts = sorted(reader.keys())[:num]
    if len(utts) < num or num < 2:
        sys.exit(f"error: --num {num}: {scp} has {len(reader)} utterances (need >= 2 and >= --num)")
    refs = read_kv(text)
    missing = [u for u in utts if u not in refs]
    if missing:
        sys.exit(f"error: {text}: no reference for {', '.join(missing[:3])}")
    return utts, reader, {u: refs[u] for u in utts}


def join(reader, utts, pause: float, noise: float, fs: int):
    """``(samples,)`` recording and the ``(start, end)`` seconds of each inserted pause."""
    rng = np.random.default_rng(0)
    pieces, pauses, t = [], [], 0
    for i, utt in enumerate(utts):
        rate, wav = reader[utt]
        if rate != fs:
            sys.exit(f"error: {utt}: {rate} Hz, the model expects {fs} Hz")
        pieces.append(np.asarray(wav, np.float32))
        t += wav.shape[0]
        if i + 1 < len(utts):
            n = round(pause * fs)
            pieces.append((noise * rng.standard_normal(n)).astype(np.float32))
            pauses.append((t / fs, (t + n) / fs))
            t += n
    return np.concatenate(pieces), pauses


def cut_offsets(segments, pauses, total_s: float):
    """For each cut (a segment end before the recording's end): 0 inside a pause, else the
    seconds to the nearest one."""
    cuts = sorted({float(end) for _, end in segments if float(end) < total_s})
    return [min(0.0 if a <= c <= b else min(abs(c - a), abs(c - b)) for a, b in pauses) for c in cuts]


def scores(ref: dict, hyp: dict, report: dict) -> dict:
    words, chars = corpus_counts(ref, hyp), corpus_counts(ref, hyp, char_counts)
    return {"wer": round(100 * words.rate, 2), "cer": round(100 * chars.rate, 2), "words": asdict(words),
            "rtf": report["rtf"]}


def main(cmd=None) -> None:
    args = get_parser().parse_args(cmd)
    try:
        endpoint = EndpointConfig.from_dict(args.endpoint_conf)
    except ValueError as e:
        sys.exit(f"error: --endpoint_conf: {e}")
    torch.set_num_threads(args.num_threads)
    rec = build_recognizer(args)
    utts, reader, refs = select(Path(args.data_dir), args.num)
    audio, pauses = join(reader, utts, args.pause, args.pause_noise, rec.fs)
    joined_ref = {"joined": " ".join(refs[u] for u in utts)}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in ("one", "joined"):
            (tmp / name).mkdir()
        (tmp / "one" / "wav.scp").write_text("".join(f"{u} {reader.get_path(u)}\n" for u in utts))
        soundfile.write(tmp / "joined.wav", audio, rec.fs, subtype="FLOAT")
        (tmp / "joined" / "wav.scp").write_text(f"joined {tmp / 'joined.wav'}\n")
        one = decode_data_dir(rec, tmp / "one", tmp / "out_one")
        whole = decode_data_dir(rec, tmp / "joined", tmp / "out_whole")
        seg = decode_data_dir(rec, tmp / "joined", tmp / "out_seg", endpoint=endpoint)  # takes rec over
        hyp = {k: read_kv(tmp / d / "text") for k, d in
               (("one", "out_one"), ("whole", "out_whole"), ("seg", "out_seg"))}
        rows = [line.split(maxsplit=4) for line in (tmp / "out_seg" / "segments.txt").read_text().splitlines()]
    segments = [(float(r[2]), float(r[3])) for r in rows]
    offsets = cut_offsets(segments, pauses, audio.size / rec.fs)
    res = {
        "command": command_line(), "date": datetime.date.today().isoformat(), "cpu": cpu_model(),
        "num_threads": args.num_threads, "model": rel(args.asr_train_config), "data_dir": rel(args.data_dir),
        "num_utterances": len(utts), "pause_s": args.pause, "pause_noise": args.pause_noise,
        "recording_s": round(audio.size / rec.fs, 3), "streaming": rec.cfg.to_dict(), "beam_size": rec.beam_size,
        "lm": args.lm_train_config is not None, "endpoint": endpoint.to_dict(),
        "num_segments": len(rows), "num_pauses": len(pauses),
        "cuts_in_pauses": sum(o == 0.0 for o in offsets), "cuts_elsewhere": sum(o > 0.0 for o in offsets),
        "cut_offsets_s": [round(o, 3) for o in offsets],
        "segments": [{"start": s, "end": e, "text": r[4] if len(r) > 4 else ""} for (s, e), r in zip(segments, rows)],
        "one_by_one": scores(refs, hyp["one"], one),
        "joined_endpointing": scores(joined_ref, hyp["seg"], seg),
        "joined_no_endpointing": scores(joined_ref, hyp["whole"], whole),
    }
    write_results(Path(args.out_dir), "endpoint", res, render(res))


def render(res: dict) -> str:
    ep = ", ".join(f"{k} {v}" for k, v in res["endpoint"].items())
    lines = [
        "# Endpointing: utterances joined by pauses, cut back into segments", "",
        f"`{res['command']}`", "",
        f"{res['date']}, {res['cpu']}, {res['num_threads']} thread(s). Model `{res['model']}`, "
        f"{res['num_utterances']} utterances of `{res['data_dir']}` joined with {res['pause_s']} s pauses "
        f"({res['recording_s']} s); streaming {res['streaming']}, beam {res['beam_size']}, "
        f"LM: {'yes' if res['lm'] else 'no'}. Endpoint rules: {ep}.", "",
        f"**{res['num_segments']} segments** for {res['num_utterances']} utterances; of the cuts, "
        f"{res['cuts_in_pauses']} inside one of the {res['num_pauses']} pauses, {res['cuts_elsewhere']} elsewhere"
        + (f" (max {max(res['cut_offsets_s'])} s from a pause)" if res["cuts_elsewhere"] else "") + ".", "",
        "| decoding | WER % | CER % | sub | del | ins | words | RTF |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, name in (("one_by_one", "one by one"), ("joined_endpointing", "joined, endpointing"),
                      ("joined_no_endpointing", "joined, no endpointing")):
        s = res[key]
        w = s["words"]
        lines.append(f"| {name} | {s['wer']} | {s['cer']} | {w['sub']} | {w['dele']} | {w['ins']} | "
                     f"{w['ref_len']} | {s['rtf']} |")
    lines += ["", "| segment | start s | end s | text |", "|---|---|---|---|"]
    lines += [f"| {i} | {s['start']} | {s['end']} | {s['text']} |" for i, s in enumerate(res["segments"])]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
