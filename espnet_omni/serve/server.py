"""A WebSocket streaming recognition server (asyncio, the ``websockets`` package).

One :class:`~espnet_omni.serve.stream.Stream` per connection, spawned from one recognizer
(shared weights / ONNX sessions); its decoding runs in a thread pool of ``threads`` workers,
so a slow stream never stalls the event loop or the other streams (ONNX Runtime and torch
release the GIL while they compute). The protocol (README "Streaming server"):

client -> server
    ``{"type": "start", "sample_rate": 16000, "format": "pcm16"}`` (text, first), then binary
    messages of little-endian 16-bit mono PCM, then ``{"type": "end"}``.
server -> client (text, JSON)
    ``{"type": "ready", "sample_rate", "chunk_samples", "endpointing"}`` after the start;
    ``{"type": "partial", "segment", "text", "received"}`` after every audio message
    (``received``: samples of the stream decoded so far);
    ``{"type": "final", "segment", "start", "end", "text"}`` when a segment closes (an endpoint,
    or the end; seconds from the stream's start);
    ``{"type": "done", "text", "segments", "seconds"}`` after the end, then the server closes (1000);
    ``{"type": "error", "error": "..."}`` before it closes a bad stream: a start message that is not
    one, another sample rate or format, bytes that are not PCM16, a message over ``max_message_bytes``
    (1009), no message for ``idle_timeout`` seconds, a server at ``max_streams`` (1013, "try again
    later"), a decoding failure (1011).

``GET /`` (no WebSocket upgrade) answers the browser page (:mod:`espnet_omni.serve.page`), which
streams the microphone to the same server. SIGTERM / SIGINT: the server stops accepting
connections, lets the open streams finish (up to ``drain_timeout`` seconds; then closes them,
1001) and returns.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import http
import json
import logging
import signal
import time
from dataclasses import dataclass
from typing import Callable, List, Optional

from espnet_omni.serve.stream import AudioFormatError, Stream

logger = logging.getLogger(__name__)

CLOSE_NORMAL, CLOSE_GOING_AWAY, CLOSE_POLICY, CLOSE_TOO_BIG, CLOSE_ERROR, CLOSE_TRY_LATER = (
    1000, 1001, 1008, 1009, 1011, 1013)


@dataclass
class ServeConfig:
    """The server's options (``bin/serve`` flags of the same names)."""

    host: str = "127.0.0.1"
    port: int = 8765  # 0: any free port (the ready line and ``Server.port`` say which)
    max_streams: int = 32
    threads: int = 2  # decoding workers
    idle_timeout: float = 15.0  # seconds without a message before a stream is closed
    max_message_bytes: int = 1 << 20  # 32 s of 16 kHz PCM16 per message
    drain_timeout: float = 60.0  # seconds open streams get to finish after SIGTERM

    def __post_init__(self):
        for key in ("max_streams", "threads", "max_message_bytes"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"{key}={getattr(self, key)}: must be >= 1")
        for key in ("idle_timeout", "drain_timeout"):
            if float(getattr(self, key)) <= 0:
                raise ValueError(f"{key}={getattr(self, key)}: must be > 0 seconds")


class StreamError(Exception):
    """A stream's fault: sent as ``{"type": "error"}`` then the connection is closed with ``code``."""

    def __init__(self, message: str, code: int = CLOSE_POLICY):
        super().__init__(message)
        self.code = code


class Server:
    """The recognition server over ``make_stream`` (a callable giving a fresh
    :class:`~espnet_omni.serve.stream.Stream` per connection).

    Attributes (read by tests and the load bench):
        active: streams open now.
        finished: ``(peer, text)`` of every stream that ended normally, in order.
        refused: connections refused at ``max_streams``.
    """

    def __init__(self, make_stream: Callable[[], Stream], config: Optional[ServeConfig] = None,
                 page: Optional[str] = None):
        self.make_stream, self.config = make_stream, config or ServeConfig()
        self.page = page
        self.pool = concurrent.futures.ThreadPoolExecutor(self.config.threads, thread_name_prefix="decode")
        self.active = 0
        self.finished: List[tuple] = []
        self.errors: List[str] = []
        self.refused = 0
        self.port: Optional[int] = None
        self._stop: Optional[asyncio.Event] = None
        self._server = None

    # ---------------------------------------------------------------- HTTP
    def _http(self, connection, request):
        """``process_request``: a plain GET (no upgrade) gets the page at ``/``, else 404."""
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        if request.path.split("?")[0] == "/" and self.page is not None:
            response = connection.respond(http.HTTPStatus.OK, self.page)
            del response.headers["Content-Type"]
            response.headers["Content-Type"] = "text/html; charset=utf-8"
            return response
        return connection.respond(http.HTTPStatus.NOT_FOUND, "not found: the page is at /, the stream a "
                                  "WebSocket at any path\n")

    # ---------------------------------------------------------------- streams
    async def _recv(self, ws):
        try:
            return await asyncio.wait_for(ws.recv(), self.config.idle_timeout)
        except asyncio.TimeoutError:
            raise StreamError(f"no message for {self.config.idle_timeout:g} s (idle_timeout): stream closed") from None

    def _start(self, message) -> None:
        """Check the start message, else StreamError."""
        if not isinstance(message, str):
            raise StreamError('the first message must be the JSON start message {"type": "start", '
                              '"sample_rate": 16000, "format": "pcm16"}, not binary audio')
        try:
            start = json.loads(message)
        except ValueError:
            raise StreamError(f"the start message is not JSON: {message[:80]!r}") from None
        if not isinstance(start, dict) or start.get("type") != "start":
            raise StreamError(f'the first message must be {{"type": "start", ...}}, got {message[:80]!r}')
        fs = self._fs
        if start.get("sample_rate") != fs:
            raise StreamError(f"sample_rate {start.get('sample_rate')!r}: the model takes {fs} Hz mono "
                              f"PCM16 (resample on the client)")
        if start.get("format", "pcm16") != "pcm16":
            raise StreamError(f"format {start.get('format')!r}: only 'pcm16' (little-endian int16 mono)")

    async def _run_in_pool(self, fn, *args):
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)
        except AudioFormatError as e:
            raise StreamError(str(e)) from None
        except Exception as e:  # a decoding failure is this stream's, not the server's
            logger.exception("decoding failed")
            raise StreamError(f"decoding failed: {type(e).__name__}: {e}", CLOSE_ERROR) from None

    async def _send_update(self, ws, update) -> None:
        for index, seg in update.finals:
            await ws.send(json.dumps({"type": "final", "segment": index, "start": round(seg.start, 3),
                                      "end": round(seg.end, 3), "text": seg.text}))
        if update.text is None:
            await ws.send(json.dumps({"type": "partial", "segment": update.segment, "text": update.partial,
                                      "received": update.received}))

    async def _session(self, ws) -> None:
        self._start(await self._recv(ws))
        stream = await self._run_in_pool(self.make_stream)
        await ws.send(json.dumps({"type": "ready", "sample_rate": stream.fs,
                                  "chunk_samples": stream.rec.chunk_samples(), "endpointing": stream.segmenting}))
        while True:
            message = await self._recv(ws)
            if isinstance(message, bytes):
                if len(message) > self.config.max_message_bytes:
                    raise StreamError(f"a message of {len(message)} bytes: at most {self.config.max_message_bytes} "
                                      "(max_message_bytes); send the audio in smaller pieces", CLOSE_TOO_BIG)
                await self._send_update(ws, await self._run_in_pool(stream.feed, message))
                continue
            try:
                kind = json.loads(message).get("type")
            except (ValueError, AttributeError):
                raise StreamError(f"a text message that is not a JSON object: {message[:80]!r}") from None
            if kind != "end":
                raise StreamError(f'text message of type {kind!r}: after the start only binary audio and '
                                  '{"type": "end"}')
            update = await self._run_in_pool(stream.finish)
            await self._send_update(ws, update)
            await ws.send(json.dumps({"type": "done", "text": update.text, "segments": update.segment,
                                      "seconds": round(update.received / stream.fs, 3)}))
            self.finished.append((ws.remote_address, update.text))
            await ws.close(CLOSE_NORMAL)
            return

    async def _handler(self, ws) -> None:
        from websockets.exceptions import ConnectionClosed

        if self.active >= self.config.max_streams:
            self.refused += 1
            await self._refuse(ws, StreamError(f"server full: {self.active} streams open (max_streams "
                                               f"{self.config.max_streams}); try again later", CLOSE_TRY_LATER))
            return
        self.active += 1
        try:
            await self._session(ws)
        except StreamError as e:
            await self._refuse(ws, e)
        except ConnectionClosed:  # the client went away: its stream is dropped, nothing else changes
            logger.info("client %s closed the connection mid-stream", ws.remote_address)
        finally:
            self.active -= 1

    async def _refuse(self, ws, error: StreamError) -> None:
        from websockets.exceptions import ConnectionClosed

        self.errors.append(str(error))
        logger.info("stream %s: %s", ws.remote_address, error)
        try:
            await ws.send(json.dumps({"type": "error", "error": str(error)}))
            await ws.close(error.code, str(error)[:120])
        except ConnectionClosed:
            pass

    # ---------------------------------------------------------------- life
    async def serve(self, ready: Optional[Callable[["Server"], None]] = None, handle_signals: bool = True,
                    sock=None) -> None:
        """Serve until :meth:`stop` (or SIGTERM / SIGINT with ``handle_signals``); then drain.
        ``sock``: a listening socket to accept on (a worker process of ``bin/serve --workers``)
        instead of ``config.host`` / ``config.port``."""
        from websockets.asyncio.server import serve

        probe = self.make_stream()  # fails early (and here, not per connection) on a broken model
        self._fs = probe.fs
        self._stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._stop.set)
        # the library's own limit is above ours, so an oversized message gets our error message
        where = dict(sock=sock) if sock is not None else dict(host=self.config.host, port=self.config.port)
        async with serve(self._handler, **where, process_request=self._http,
                         max_size=4 * self.config.max_message_bytes, ping_interval=20, ping_timeout=20) as server:
            self._server = server
            self.port = server.sockets[0].getsockname()[1]
            if ready is not None:
                ready(self)
            await self._stop.wait()
            server.close(close_connections=False)  # no new connections; the open ones go on
            deadline = time.monotonic() + self.config.drain_timeout
            while self.active and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if self.active:
                logger.warning("%d streams still open after %g s (drain_timeout): closing them", self.active,
                               self.config.drain_timeout)
                for ws in list(server.connections):
                    await ws.close(CLOSE_GOING_AWAY, "server shutting down")
        self.pool.shutdown(wait=True)

    def stop(self) -> None:
        """Stop accepting and drain (thread-safe only from the server's loop)."""
        if self._stop is not None:
            self._stop.set()
