"""Test dummies for tests/serve (not a test module): a tiny model's ONNX export with an LM, waves,
a server run in a thread, and the offline chunk-by-chunk decode the server must equal."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from pathlib import Path

import numpy as np
import soundfile

from espnet_omni.bin import asr_inference_streaming, export_onnx as export_onnx_bin, serve
from espnet_omni.testing.random_supernet import (TINY_ENCODER_CONF, TINY_FRONTEND_CONF, TINY_TOKENS,
                                                 write_random_supernet)
from espnet_omni.testing.tiny_lm import write_tiny_lm

FS = 16000
# the decoder's options, the same for the server and the offline decode
DECODE = ["--beam_size", "4", "--lm_weight", "0.5", "--penalty", "0.2"]


def make_export(root: Path) -> Path:
    """A random tiny CTC supernet's streaming ONNX export (fp32 + int8) with a random LM
    (``lm.onnx``): ``root/onnx``."""
    config, weights = write_random_supernet(root / "asr", TINY_TOKENS, TINY_ENCODER_CONF, TINY_FRONTEND_CONF, 0,
                                            random_batchnorm=True)
    lm_config, lm_weights = write_tiny_lm(root / "lm", TINY_TOKENS, nlayers=2, scale=4.0)
    out = root / "onnx"
    export_onnx_bin.main(["--asr_train_config", str(config), "--asr_model_file", str(weights),
                          "--out_dir", str(out), "--modes", "streaming", "--chunk_size", "4",
                          "--left_chunks", "2", "--int8", "true",
                          "--lm_train_config", str(lm_config), "--lm_file", str(lm_weights)])
    return out


def make_waves(root: Path, n: int = 8, seed: int = 0) -> Path:
    """``n`` PCM16 wavs of 0.6-2.6 s (noise bursts between near-silences, so the random model
    says different things and endpoints can fire) and a data dir ``root/waves`` over them."""
    rng = np.random.default_rng(seed)
    data = root / "waves"
    data.mkdir(parents=True)
    lines = []
    for i in range(n):
        parts = []
        for _ in range(rng.integers(1, 4)):
            parts.append(rng.uniform(-0.5, 0.5, int(rng.integers(3000, 12000))))
            parts.append(0.001 * rng.standard_normal(int(rng.integers(1000, 8000))))
        wav = data / f"w{i}.wav"
        soundfile.write(wav, np.concatenate(parts).astype(np.float32), FS, subtype="PCM_16")
        lines.append(f"w{i} {wav}\n")
    (data / "wav.scp").write_text("".join(lines))
    return data


def pcm16(path: Path) -> np.ndarray:
    return soundfile.read(path, dtype="int16")[0]


def offline(export: Path, data: Path, out: Path, *extra: str) -> dict:
    """``asr_inference_streaming`` of the data dir (int8, endpointing as the server's default):
    ``{utt: text}``."""
    asr_inference_streaming.main(["--onnx_dir", str(export), "--int8", "--endpoint", "true", *DECODE, *extra,
                                  "--data_dir", str(data), "--output_dir", str(out)])
    pairs = (line.split(" ", 1) for line in (out / "text").read_text().splitlines())
    return {p[0]: p[1] if len(p) > 1 else "" for p in pairs}


def build(export: Path, *extra: str) -> serve.Server:
    """The server ``bin/serve --model_dir export`` builds (any free port)."""
    return serve.build_server(serve.get_parser().parse_args(
        ["--model_dir", str(export), "--port", "0", *DECODE, *extra]))


@contextlib.contextmanager
def running(server: serve.Server):
    """Serve in a thread of its own (its own event loop); yields the ``ws://`` URL; stops and
    drains on exit."""
    loop = asyncio.new_event_loop()
    started, failed = threading.Event(), []

    def main():
        try:
            loop.run_until_complete(server.serve(ready=lambda s: started.set(), handle_signals=False))
        except BaseException as e:  # pragma: no cover - shown by the assert below
            failed.append(e)
            started.set()
        finally:
            loop.close()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    assert started.wait(120) and not failed, failed
    try:
        yield f"ws://127.0.0.1:{server.port}"
    finally:
        loop.call_soon_threadsafe(server.stop)
        thread.join(60)


async def exchange(url: str, messages, timeout: float = 10.0, abort: bool = False):
    """Send ``messages`` (str: text, bytes: binary) on a raw connection; then collect the
    server's JSON messages until it closes (``abort``: drop the TCP connection without a close).
    Returns ``(messages, close code)``; fails if the server has not closed within ``timeout``."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    got = []
    async with connect(url, max_size=None) as ws:
        try:
            for m in messages:
                await ws.send(m)
        except ConnectionClosed:
            pass
        if abort:
            ws.transport.abort()
            return got, None

        async def collect():
            with contextlib.suppress(ConnectionClosed):
                async for m in ws:
                    got.append(json.loads(m))

        try:
            await asyncio.wait_for(collect(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"the server did not close the stream within {timeout} s; it sent {got}") from None
        return got, ws.close_code


def start_message(rate: int = FS) -> str:
    return json.dumps({"type": "start", "sample_rate": rate, "format": "pcm16"})
