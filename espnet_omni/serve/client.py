"""The streaming server's client: one recording streamed, partials timed, finals collected.

Usage::

    result = asyncio.run(stream_audio("ws://127.0.0.1:8765", pcm16, 16000))   # real time
    result.text, result.segments, result.latencies_ms

``pcm16``: an ``int16`` array (what a PCM16 wav holds). It is sent in ``chunk_ms`` pieces, at
real time (piece ``i`` at ``t0 + i * chunk_ms``) or, with ``realtime=False``, as fast as the
server answers (each piece after the previous one's partial). Every piece's partial is timed
from the piece's send to its arrival (the server answers each audio message once): that is
the latency the server adds beyond the audio's own duration.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np


class ServerError(RuntimeError):
    """The server's ``{"type": "error"}`` message, or a connection closed before ``done``."""


@dataclass
class StreamResult:
    """One stream's outcome."""

    text: str = ""
    segments: List[dict] = field(default_factory=list)  # the server's final messages
    latencies_ms: List[float] = field(default_factory=list)  # per audio message: send -> its partial
    partials: int = 0
    seconds: float = 0.0  # audio the server decoded (its done message)
    sent_seconds: float = 0.0
    wall_seconds: float = 0.0


async def stream_audio(url: str, pcm16: np.ndarray, sample_rate: int, chunk_ms: float = 100.0,
                       realtime: bool = True, open_timeout: float = 30.0) -> StreamResult:
    """Stream ``pcm16`` to the server at ``url``; returns the :class:`StreamResult`.

    Raises:
        ServerError: the server's error message (e.g. full, another sample rate), or the
            connection closed before the stream's ``done``.
    """
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    pcm16 = np.ascontiguousarray(pcm16, dtype="<i2")
    step = max(1, int(round(sample_rate * chunk_ms / 1000.0)))
    pieces = [pcm16[i : i + step].tobytes() for i in range(0, len(pcm16), step)]
    result = StreamResult(sent_seconds=len(pcm16) / sample_rate)
    sent_at: List[float] = []
    answered = asyncio.Event()
    tic = time.perf_counter()
    try:
        async with connect(url, open_timeout=open_timeout, max_size=None) as ws:
            await ws.send(json.dumps({"type": "start", "sample_rate": sample_rate, "format": "pcm16"}))
            ready = json.loads(await ws.recv())
            if ready.get("type") == "error":
                raise ServerError(ready["error"])

            async def reader():
                async for message in ws:
                    m = json.loads(message)
                    if m["type"] == "partial":
                        result.latencies_ms.append((time.perf_counter() - sent_at[result.partials]) * 1000.0)
                        result.partials += 1
                        answered.set()
                    elif m["type"] == "final":
                        result.segments.append(m)
                    elif m["type"] == "done":
                        result.text, result.seconds = m["text"], m["seconds"]
                        return True
                    elif m["type"] == "error":
                        raise ServerError(m["error"])
                return False

            task = asyncio.create_task(reader())
            t0 = time.perf_counter()
            for i, piece in enumerate(pieces):
                if realtime:
                    delay = t0 + i * step / sample_rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                answered.clear()
                sent_at.append(time.perf_counter())
                await ws.send(piece)
                if not realtime:
                    await asyncio.wait([task, asyncio.ensure_future(answered.wait())],
                                       return_when=asyncio.FIRST_COMPLETED)
                if task.done():
                    break
            if not task.done():
                await ws.send(json.dumps({"type": "end"}))
            if not await task:
                raise ServerError(f"{url}: the server closed the stream before its result "
                                  f"({ws.close_code} {ws.close_reason})")
    except ConnectionClosed as e:
        raise ServerError(f"{url}: connection closed ({e})") from None
    except OSError as e:
        raise ServerError(f"{url}: cannot connect ({e.strerror or e})") from None
    result.wall_seconds = time.perf_counter() - tic
    return result


def read_pcm16(path) -> tuple:
    """``(int16 samples, sample_rate)`` of a mono wav (or any file ``soundfile`` reads).

    Raises:
        ValueError: several channels, naming the file.
    """
    import soundfile

    data, fs = soundfile.read(str(path), dtype="int16", always_2d=True)
    if data.shape[1] != 1:
        raise ValueError(f"{path}: {data.shape[1]} channels; the server takes mono")
    return data[:, 0], int(fs)


def percentile(values, q) -> Optional[float]:
    """The ``q``-th percentile (None without values)."""
    return float(np.percentile(values, q)) if len(values) else None
