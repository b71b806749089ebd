"""The server's page in a real headless browser (issue 26): Debian's chromium streams a wav as
its fake microphone through the page's AudioContext to the server; the page shows the text the
server sent (read from the DOM over the DevTools protocol)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import urllib.request

import numpy as np
import pytest
import soundfile
from serve_dummies import FS, build, make_export, make_waves, running

pytest.importorskip("websockets")
pytest.importorskip("onnxruntime")
BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no chromium (tools/install.sh --test installs it)")
SECONDS = 3


def _devtools_port(profile, proc, timeout=60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        f = profile / "DevToolsActivePort"
        if f.is_file() and f.read_text().strip():
            return int(f.read_text().split()[0])
        if proc.poll() is not None:
            raise AssertionError(f"chromium exited {proc.returncode}: {proc.stderr.read()[-2000:]}")
        time.sleep(0.1)
    raise AssertionError("chromium wrote no DevToolsActivePort")


async def _page_state(devtools_port: int, timeout: float = 90.0) -> dict:
    """Poll the page's #status / #text / #finals until the status is done (or an error)."""
    from websockets.asyncio.client import connect

    pages = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{devtools_port}/json/list").read())
    target = next(p for p in pages if p.get("type") == "page")
    expression = ('JSON.stringify({status: document.getElementById("status").textContent, '
                  'text: document.getElementById("text").textContent, '
                  'finals: document.querySelectorAll("#finals div").length})')
    async with connect(target["webSocketDebuggerUrl"], max_size=None) as cdp:
        deadline, state, n = time.monotonic() + timeout, {}, 0
        while time.monotonic() < deadline:
            n += 1
            await cdp.send(json.dumps({"id": n, "method": "Runtime.evaluate",
                                       "params": {"expression": expression, "returnByValue": True}}))
            while True:
                reply = json.loads(await cdp.recv())
                if reply.get("id") == n:
                    break
            value = reply.get("result", {}).get("result", {}).get("value")
            if value is None:  # the page is not loaded yet (no #status)
                await asyncio.sleep(0.25)
                continue
            state = json.loads(value)
            if state["status"] == "done" or state["status"].startswith("error"):
                return state
            await asyncio.sleep(0.25)
    raise AssertionError(f"the page did not finish within {timeout} s: {state}")


def test_the_page_streams_a_microphone_and_shows_the_servers_text(tmp_path):
    export = make_export(tmp_path)
    data = make_waves(tmp_path, n=4, seed=1)
    mic = tmp_path / "mic.wav"  # the fake microphone: the waves one after another (44.1 kHz, as a sound card)
    audio = np.concatenate([soundfile.read(data / f"w{i}.wav", dtype="float32")[0] for i in range(4)])
    soundfile.write(mic, np.interp(np.arange(0, len(audio), FS / 44100), np.arange(len(audio)), audio)
                    .astype(np.float32), 44100, subtype="PCM_16")
    server = build(export, "--endpoint_conf", "rule3_max_segment_length=1.0")  # a segment per second at least
    profile = tmp_path / "profile"
    with running(server) as url:
        page = url.replace("ws://", "http://") + f"/?autostart=1&seconds={SECONDS}"
        proc = subprocess.Popen(
            [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-quic",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
             f"--use-file-for-fake-audio-capture={mic}", "--autoplay-policy=no-user-gesture-required",
             "--remote-debugging-port=0", f"--user-data-dir={profile}", page],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            state = asyncio.run(_page_state(_devtools_port(profile, proc)))
        finally:
            proc.kill()
            proc.wait(30)
    assert state["status"] == "done", state
    assert len(server.finished) == 1 and not server.errors, server.errors
    shown = server.finished[0][1]
    assert shown, "the server decoded nothing from the browser's audio"
    assert state["text"] == shown and state["finals"] >= SECONDS - 1  # the finals shown, joined
