"""The streaming server over loopback (issue 26): concurrent clients get the offline
chunk-by-chunk decode; every fault gets a clear error or is cleaned up while a concurrent
stream's text stays what it should be; --max_streams refuses; SIGTERM drains."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from serve_dummies import FS, build, exchange, make_export, make_waves, offline, pcm16, running, start_message

from espnet_omni.serve.client import ServerError, stream_audio

pytest.importorskip("websockets")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(export dir, data dir, {utt: offline text}, {utt: offline segment count})."""
    root = tmp_path_factory.mktemp("serve")
    export = make_export(root)
    data = make_waves(root)
    texts = offline(export, data, root / "offline")
    segments = {}
    for line in (root / "offline" / "segments.txt").read_text().splitlines():
        utt = line.split()[0]
        segments[utt] = segments.get(utt, 0) + 1
    return export, data, texts, segments


def wave(setup, utt):
    return pcm16(setup[1] / f"{utt}.wav")


def test_eight_concurrent_clients_get_the_offline_chunk_by_chunk_decode(setup):
    """8 streams at once, each cut into other piece sizes (30-170 ms): each stream's text is
    asr_inference_streaming's for its wav, and its finals are its segments; the texts differ
    (the check means something)."""
    export, data, texts, segments = setup
    assert len(set(texts.values())) > 3 and all(texts.values())
    server = build(export, "--threads", "2")
    with running(server) as url:
        async def all_streams():
            return await asyncio.gather(*[
                stream_audio(url, wave(setup, utt), FS, chunk_ms=30 + 20 * i, realtime=False)
                for i, utt in enumerate(sorted(texts))])
        results = asyncio.run(all_streams())
    assert {utt: r.text for utt, r in zip(sorted(texts), results)} == texts
    for utt, r in zip(sorted(texts), results):
        assert len(r.segments) == segments.get(utt, 0), utt
        assert " ".join(s["text"] for s in r.segments if s["text"]) == r.text
        assert r.partials == len(r.latencies_ms) > 0
        assert r.seconds == pytest.approx(len(wave(setup, utt)) / FS, abs=1e-3)
    assert server.active == 0 and len(server.finished) == 8 and not server.errors


# (name, messages after connecting, the error's words, close code)
FAULTS = [
    ("another sample rate", [start_message(8000)], "sample_rate 8000: the model takes 16000 Hz", 1008),
    ("not PCM16 (odd bytes)", [start_message(), b"\x01\x02\x03"], "PCM16 audio has 2 bytes per sample", 1008),
    ("audio before the start", [b"\x00\x00" * 100], "the first message must be the JSON start message", 1008),
    ("a start that is not JSON", ["hello"], "the start message is not JSON", 1008),
    ("text that is not JSON", [start_message(), "{oops"], "a text message that is not a JSON object", 1008),
    ("oversized message", [start_message(), b"\x00\x00" * 4000], "a message of 8000 bytes: at most 4000", 1009),
    ("idle past the timeout", [start_message()], "no message for 1 s (idle_timeout)", 1008),
]


@pytest.fixture(scope="module")
def fault_server(setup):
    server = build(setup[0], "--idle_timeout", "1", "--max_message_bytes", "4000")
    with running(server) as url:
        yield server, url


def _wait_idle(server, timeout=10.0):
    deadline = time.monotonic() + timeout
    while server.active and time.monotonic() < deadline:
        time.sleep(0.05)
    return server.active


@pytest.mark.parametrize("name, messages, words, code", FAULTS, ids=[f[0] for f in FAULTS])
def test_a_bad_stream_gets_a_clear_error_and_a_concurrent_stream_is_unchanged(setup, fault_server, name,
                                                                           messages, words, code):
    server, url = fault_server
    utt = "w3"

    async def both():
        good = asyncio.create_task(stream_audio(url, wave(setup, utt), FS, chunk_ms=100, realtime=True))
        await asyncio.sleep(0.3)  # the good stream is under way
        bad = await exchange(url, messages)
        return bad, await good
    (got, close_code), good = asyncio.run(both())
    assert got[-1]["type"] == "error" and words in got[-1]["error"], got
    assert close_code == code
    assert good.text == setup[2][utt]
    assert _wait_idle(server) == 0


def test_a_client_that_disconnects_mid_stream_is_cleaned_up(setup, fault_server):
    """The TCP connection dropped mid-stream (no close frame): the server forgets the stream
    (active back to 0), a concurrent stream is unchanged, the next stream works."""
    server, url = fault_server
    utt = "w5"
    samples = wave(setup, "w1")

    async def both():
        good = asyncio.create_task(stream_audio(url, wave(setup, utt), FS, chunk_ms=100, realtime=True))
        await asyncio.sleep(0.3)
        await exchange(url, [start_message(), samples[:8000][:1600].tobytes(), samples[1600:3200].tobytes()],
                       abort=True)
        return await good
    assert asyncio.run(both()).text == setup[2][utt]
    assert _wait_idle(server) == 0
    assert asyncio.run(stream_audio(url, wave(setup, utt), FS, realtime=False)).text == setup[2][utt]


def test_max_streams_refuses_the_next_with_a_message(setup):
    """--max_streams 1: while one stream is open the next gets "server full" (1013); after
    it ends, a new one is served."""
    server = build(setup[0], "--max_streams", "1")
    with running(server) as url:
        async def scenario():
            from websockets.asyncio.client import connect

            async with connect(url) as ws:
                await ws.send(start_message())
                assert json.loads(await ws.recv())["type"] == "ready"
                with pytest.raises(ServerError, match=r"server full: 1 streams open \(max_streams 1\); try again"):
                    await stream_audio(url, wave(setup, "w2"), FS, realtime=False)
                await ws.send(wave(setup, "w2").tobytes())
                await ws.send(json.dumps({"type": "end"}))
                done = [json.loads(m) async for m in ws][-1]
            return done, await stream_audio(url, wave(setup, "w2"), FS, realtime=False)
        done, after = asyncio.run(scenario())
    assert done["type"] == "done" and done["text"] == setup[2]["w2"]
    assert after.text == setup[2]["w2"]
    assert server.refused == 1


def test_the_page_and_http(setup):
    """GET / is the browser page (with the model's rate); another path is 404."""
    server = build(setup[0])
    with running(server) as url:
        http = url.replace("ws://", "http://")
        page = urllib.request.urlopen(http + "/").read().decode()
        assert "const RATE = 16000;" in page and "getUserMedia" in page
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(http + "/nothing")


def test_sigterm_finishes_open_streams_before_exit(setup, tmp_path):
    """bin/serve in a process of its own: SIGTERM while a stream is open at real time; the
    stream still gets its whole text, a new connection is refused, the process exits 0."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "espnet_omni.bin.serve", "--model_dir", str(setup[0]),
                             "--port", "0", "--beam_size", "4", "--lm_weight", "0.5", "--penalty", "0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving ws://127.0.0.1:"), (line, proc.stderr.read() if proc.poll() else "")
        url = line.split()[1].rstrip("/")
        utt = max(setup[2], key=lambda u: len(wave(setup, u)))

        async def scenario():
            good = asyncio.create_task(stream_audio(url, wave(setup, utt), FS, chunk_ms=100, realtime=True))
            await asyncio.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            with pytest.raises(ServerError, match="cannot connect|connection closed"):
                await stream_audio(url, wave(setup, "w0"), FS, realtime=False, open_timeout=5)
            return await good
        result = asyncio.run(scenario())
        assert result.text == setup[2][utt]
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_stream_client_writes_the_offline_text_and_segments(setup, tmp_path, capsys):
    """bin/stream_client --data_dir: its text and segments.txt are asr_inference_streaming's,
    file for file; a wav on the command line prints its text; its errors are one line."""
    from espnet_omni.bin import stream_client

    export, data, texts, _ = setup
    server = build(export)
    with running(server) as url:
        stream_client.main(["--server", url, "--data_dir", str(data), "--output", str(tmp_path / "out/text"),
                            "--segments", str(tmp_path / "out/segments.txt"), "--fast", "--concurrency", "4"])
        assert "8 streams" in capsys.readouterr().err
        offline_dir = data.parent / "offline"
        assert (tmp_path / "out/text").read_text() == (offline_dir / "text").read_text()
        assert (tmp_path / "out/segments.txt").read_text() == (offline_dir / "segments.txt").read_text()
        stream_client.main(["--server", url, "--fast", str(data / "w4.wav")])
        assert capsys.readouterr().out == f"{data / 'w4.wav'}\t{texts['w4']}\n"
        with pytest.raises(SystemExit, match=r"error: --data_dir .*nothing: no wav.scp"):
            stream_client.main(["--server", url, "--data_dir", str(tmp_path / "nothing"), "--output", "x"])
    with pytest.raises(SystemExit, match=r"error: .*w4\.wav: ws://127.0.0.1:\d+: cannot connect"):
        stream_client.main(["--server", url, "--fast", str(data / "w4.wav")])


def test_workers_share_one_port_and_drain_on_sigterm(setup):
    """bin/serve --workers 2: two processes accept on one port (the ready line names them);
    4 concurrent streams get the offline texts; SIGTERM reaches both and the parent exits 0."""
    export, _, texts, _ = setup
    proc = subprocess.Popen([sys.executable, "-m", "espnet_omni.bin.serve", "--model_dir", str(export), "--port", "0",
                             "--workers", "2", "--beam_size", "4", "--lm_weight", "0.5", "--penalty", "0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving ws://127.0.0.1:") and "2 workers:" in line, line
        url = line.split()[1].rstrip("/")
        workers = [int(p) for p in line.split("workers:")[1].strip(" )\n").split()]
        utts = sorted(texts)[:4]

        async def streams():
            return await asyncio.gather(*[stream_audio(url, wave(setup, u), FS, realtime=False) for u in utts])
        assert [r.text for r in asyncio.run(streams())] == [texts[u] for u in utts]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        for pid in workers:  # gone
            assert not os.path.exists(f"/proc/{pid}") or "Z" in open(f"/proc/{pid}/stat").read().split()[2]
    finally:
        if proc.poll() is None:
            proc.kill()
