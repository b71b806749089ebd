#!/usr/bin/env python3
"""Stream wavs to the recognition server (``espnet_omni.bin.serve``) and print or write the text.

Usage:
    python -m espnet_omni.bin.stream_client --server ws://127.0.0.1:8765 a.wav b.wav
    python -m espnet_omni.bin.stream_client --server ws://127.0.0.1:8765 \
        --data_dir data/test --output exp/served/text [--segments exp/served/segments.txt] \
        [--fast] [--concurrency 4] [--chunk_ms 100]

Each recording is sent in ``--chunk_ms`` pieces at real time (``--fast``: each piece as soon as
the previous one's partial arrived). With wavs: one line per file, ``FILE<TAB>TEXT``. With ``--data_dir``: the Kaldi ``text`` of its ``wav.scp`` (score it like
any decode: ``--output exp/served/decode/test/text``, then ``python -m espnet_omni.scoring.score
--exp exp/served --decode decode --dump dump/raw --sets test``), and with
``--segments`` the server's finals (``UTT INDEX START END TEXT``, the ``segments.txt`` of
``asr_inference_streaming --endpoint true``). The send-to-partial latency p50/p95 goes to stderr.
"""

import argparse
import asyncio
import sys
from pathlib import Path

import numpy as np

from espnet_omni.inference.segmenter import Segment, segment_lines
from espnet_omni.serve.client import ServerError, percentile, read_pcm16, stream_audio


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--server", required=True, help="ws://HOST:PORT of espnet_omni.bin.serve")
    p.add_argument("wavs", nargs="*", help="mono wavs (any rate soundfile reads; the server says which it takes)")
    p.add_argument("--data_dir", default=None, help="a Kaldi data dir: stream every utterance of its wav.scp")
    p.add_argument("--output", default=None, help="with --data_dir: the Kaldi text to write")
    p.add_argument("--segments", default=None, help="with --data_dir: the finals, one line per segment")
    p.add_argument("--fast", action="store_true", help="not at real time: as fast as the server answers")
    p.add_argument("--chunk_ms", type=float, default=100.0, help="audio per message")
    p.add_argument("--concurrency", type=int, default=1, help="streams open at once")
    return p


def wav_scp(data_dir: Path):
    """``(utt, int16 samples, rate)`` per line of ``data_dir/wav.scp`` (ESPnet's reader: paths,
    pipes and ark offsets); exits naming the file."""
    from espnet2.fileio.sound_scp import SoundScpReader

    scp = data_dir / "wav.scp"
    if not scp.is_file():
        sys.exit(f"error: --data_dir {data_dir}: no wav.scp")
    reader = SoundScpReader(str(scp), dtype="int16", always_2d=False)
    for utt in reader.keys():
        try:
            fs, wav = reader[utt]
        except Exception as e:  # libsndfile raises several types for a missing or broken file
            sys.exit(f"error: utterance {utt!r} in {scp}: unreadable ({type(e).__name__}: {e})")
        if wav.ndim != 1:
            sys.exit(f"error: utterance {utt!r} in {scp}: {wav.shape[1]} channels; the server takes mono")
        yield utt, np.asarray(wav, dtype=np.int16), int(fs)


async def stream_all(url, items, fast: bool, chunk_ms: float, concurrency: int):
    """``{name: StreamResult}`` of every ``(name, samples, rate)``, ``concurrency`` at a time."""
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(name, samples, fs):
        async with gate:
            try:
                return name, await stream_audio(url, samples, fs, chunk_ms=chunk_ms, realtime=not fast)
            except ServerError as e:
                raise ServerError(f"{name}: {e}") from None
    return dict(await asyncio.gather(*(one(*item) for item in items)))


def main(cmd=None):
    args = get_parser().parse_args(cmd)
    if bool(args.wavs) == bool(args.data_dir):
        sys.exit("error: give wavs or --data_dir (not both)")
    if args.data_dir and not args.output:
        sys.exit("error: --data_dir needs --output (the Kaldi text to write)")
    if args.wavs and (args.output or args.segments):
        sys.exit("error: --output and --segments go with --data_dir")
    if args.chunk_ms <= 0 or args.concurrency < 1:
        sys.exit("error: --chunk_ms must be > 0 and --concurrency >= 1")
    if args.wavs:
        items = []
        for w in args.wavs:
            try:
                items.append((w, *read_pcm16(w)))
            except (ValueError, RuntimeError, OSError) as e:  # soundfile: RuntimeError / LibsndfileError
                sys.exit(f"error: {w}: {e}")
    else:
        items = list(wav_scp(Path(args.data_dir)))
    try:
        results = asyncio.run(stream_all(args.server, items, args.fast, args.chunk_ms, args.concurrency))
    except ServerError as e:
        sys.exit(f"error: {e}")
    latencies = [x for r in results.values() for x in r.latencies_ms]
    if args.wavs:
        for name, *_ in items:
            print(f"{name}\t{results[name].text}")
    else:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(f"{utt} {results[utt].text}\n".replace(" \n", "\n") for utt, *_ in items))
        if args.segments:
            Path(args.segments).write_text("".join(
                line for utt, *_ in items for line in segment_lines(
                    utt, [Segment(s["start"], s["end"], s["text"]) for s in results[utt].segments])))
    audio = sum(r.seconds for r in results.values())
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    print(f"{len(results)} streams, {audio:.1f} s of audio; partial latency after each message: "
          f"p50 {p50 or 0:.1f} ms, p95 {p95 or 0:.1f} ms", file=sys.stderr)


if __name__ == "__main__":
    main()
