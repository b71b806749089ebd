"""The browser page the server answers at ``GET /``: the microphone, streamed.

It asks for the microphone, resamples it in an ``AudioContext`` at the model's rate (16 kHz),
sends 16-bit PCM over a WebSocket to the page's own server (the protocol of
:mod:`espnet_omni.serve.server`) and shows the open segment's partial text (``#partial``) and
each closed segment's final text with its times (``#finals``; all finals joined: ``#text``).
``?autostart=1&seconds=N`` starts at once and stops after N seconds (the headless browser test
uses it); ``#status`` ends as ``done`` after the server's ``done`` message.
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>espnet_omni streaming ASR</title>
<style>
 body { font-family: sans-serif; max-width: 46em; margin: 2em auto; }
 #partial { color: #777; min-height: 1.5em; }
 #finals div { margin: .2em 0; }
 .t { color: #999; font-size: 80%; margin-right: .6em; }
</style>
</head>
<body>
<h1>espnet_omni streaming recognition</h1>
<p><button id="start">Start</button> <button id="stop" disabled>Stop</button>
 <span id="status">idle</span></p>
<div id="finals"></div>
<div id="partial"></div>
<div id="text" hidden></div>
<script>
"use strict";
const RATE = @RATE@;
const params = new URLSearchParams(location.search);
let ws = null, ctx = null, source = null, node = null, media = null;
const $ = (id) => document.getElementById(id);
function status(s) { $("status").textContent = s; }

function toPcm16(f32) {
  const out = new Int16Array(f32.length);
  for (let i = 0; i < f32.length; i++) {
    const s = Math.max(-1, Math.min(1, f32[i]));
    out[i] = s < 0 ? Math.round(s * 32768) : Math.round(s * 32767);
  }
  return out.buffer;
}

function onMessage(ev) {
  const m = JSON.parse(ev.data);
  if (m.type === "partial") { $("partial").textContent = m.text; }
  else if (m.type === "final") {
    const d = document.createElement("div");
    const t = document.createElement("span");
    t.className = "t"; t.textContent = m.start.toFixed(2) + "-" + m.end.toFixed(2) + " s";
    d.appendChild(t); d.appendChild(document.createTextNode(m.text));
    $("finals").appendChild(d); $("partial").textContent = "";
    $("text").textContent = ($("text").textContent + " " + m.text).trim();
  } else if (m.type === "ready") { status("listening"); }
  else if (m.type === "done") { status("done"); }
  else if (m.type === "error") { status("error: " + m.error); }
}

async function start() {
  $("start").disabled = true;
  status("starting");
  media = await navigator.mediaDevices.getUserMedia({audio: {channelCount: 1, echoCancellation: false,
                                                            noiseSuppression: false, autoGainControl: false}});
  ctx = new AudioContext({sampleRate: RATE});
  source = ctx.createMediaStreamSource(media);
  node = ctx.createScriptProcessor(4096, 1, 1);
  ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/stream");
  ws.binaryType = "arraybuffer";
  ws.onmessage = onMessage;
  ws.onclose = () => { if ($("status").textContent !== "done" && !$("status").textContent.startsWith("error")) status("closed"); };
  ws.onopen = () => {
    ws.send(JSON.stringify({type: "start", sample_rate: ctx.sampleRate, format: "pcm16"}));
    node.onaudioprocess = (e) => { if (ws.readyState === 1) ws.send(toPcm16(e.inputBuffer.getChannelData(0))); };
    source.connect(node); node.connect(ctx.destination);
    $("stop").disabled = false;
  };
}

function stop() {
  $("stop").disabled = true;
  if (node) { node.disconnect(); node.onaudioprocess = null; }
  if (source) source.disconnect();
  if (media) media.getTracks().forEach((t) => t.stop());
  if (ws && ws.readyState === 1) { ws.send(JSON.stringify({type: "end"})); status("finishing"); }
  $("start").disabled = false;
}

$("start").onclick = () => start().catch((e) => status("error: " + e));
$("stop").onclick = stop;
if (params.get("autostart")) {
  start().then(() => { const s = parseFloat(params.get("seconds") || "0"); if (s > 0) setTimeout(stop, s * 1000); })
         .catch((e) => status("error: " + e));
}
</script>
</body>
</html>
"""


def page_html(sample_rate: int = 16000) -> str:
    """The page for a model of this sample rate."""
    return PAGE.replace("@RATE@", str(int(sample_rate)))
