#!/usr/bin/env python3
"""Streaming recognition server: audio in over a WebSocket, partial and final text out.

Usage:
    python -m espnet_omni.bin.serve --model_dir exp/asr/onnx \
        [--decode_config conf/decode_ctc_lm_stream.yaml] [--host 127.0.0.1 --port 8765] \
        [--max_streams 32 --threads 2] [--fp32] [--endpoint false]
    python -m espnet_omni.bin.serve --asr_train_config exp/asr_x/config.yaml \
        --asr_model_file exp/asr_x/pareto/frac0.5/dense/model.pth \
        --lm_train_config exp/lm_char/config.yaml --lm_file exp/lm_char/valid.loss.ave.pth \
        --decode_config conf/decode_ctc_lm_stream.yaml       # PyTorch
Then open http://127.0.0.1:8765/ (the microphone, streamed from the browser), or stream files:
    python -m espnet_omni.bin.stream_client --server ws://127.0.0.1:8765 a.wav b.wav

``--model_dir``: an ONNX export (``bin/export_onnx``; its ``lm.onnx`` fused when the decode
config's ``lm_weight`` > 0), its int8 graphs unless ``--fp32``. The other model flags are
``asr_inference_streaming``'s (the same recognizer, so a stream's text is its offline
chunk-by-chunk decode). Endpointing is on (``--endpoint false`` for one segment per stream).
Protocol: README "Streaming server" and :mod:`espnet_omni.serve.server`.
Prints ``serving ws://HOST:PORT/`` once it listens (``--port 0``: a free port).
"""

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from espnet_omni.bin.asr_inference_streaming import add_recognizer_args, build_recognizer, endpoint_config
from espnet_omni.inference.segmenter import SegmentingRecognizer
from espnet_omni.serve.page import page_html
from espnet_omni.serve.server import Server, ServeConfig
from espnet_omni.serve.stream import Stream


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model_dir", default=None,
                   help="an ONNX export dir (bin/export_onnx): served with ONNX Runtime, int8 unless --fp32")
    p.add_argument("--fp32", action="store_true", help="with --model_dir: the fp32 graphs")
    add_recognizer_args(p)
    d = ServeConfig()
    p.add_argument("--host", default=d.host)
    p.add_argument("--port", type=int, default=d.port, help="0: any free port")
    p.add_argument("--max_streams", type=int, default=d.max_streams, help="open streams; the next is refused")
    p.add_argument("--threads", type=int, default=d.threads, help="decoding worker threads (per process)")
    p.add_argument("--workers", type=int, default=1,
                   help="server processes accepting on the one port (the decoder's Python search holds the GIL: "
                   "one process uses about 1.3 cores; --workers 2 uses a 2-core machine); --max_streams is "
                   "shared out among them")
    p.add_argument("--listen_fd", type=int, default=None, help=argparse.SUPPRESS)  # a worker's inherited socket
    p.add_argument("--idle_timeout", type=float, default=d.idle_timeout,
                   help="seconds without a message before a stream is closed")
    p.add_argument("--max_message_bytes", type=int, default=d.max_message_bytes)
    p.add_argument("--drain_timeout", type=float, default=d.drain_timeout,
                   help="seconds the open streams get to finish after SIGTERM")
    p.set_defaults(endpoint=True)
    return p


def model_args(args) -> None:
    """``--model_dir`` as ``build_recognizer``'s ``--onnx_dir`` / ``--int8``; exits naming the problem."""
    if args.model_dir is None:
        if args.fp32:
            sys.exit("error: --fp32 goes with --model_dir")
        return
    if args.onnx_dir is not None:
        sys.exit("error: give --model_dir or --onnx_dir, not both")
    meta = Path(args.model_dir) / "onnx.json"
    if not meta.is_file():
        sys.exit(f"error: --model_dir {args.model_dir}: no onnx.json (an ONNX export of "
                 "python -m espnet_omni.bin.export_onnx; a PyTorch model: --asr_train_config/--asr_model_file)")
    graphs = json.loads(meta.read_text()).get("graphs", {})
    args.onnx_dir = args.model_dir
    args.int8 = args.int8 or (not args.fp32 and "streaming_int8" in graphs)


def build_server(args) -> Server:
    """The :class:`Server` the parsed flags describe; exits naming a wrong flag."""
    model_args(args)
    try:
        config = ServeConfig(host=args.host, port=args.port, max_streams=args.max_streams, threads=args.threads,
                             idle_timeout=args.idle_timeout, max_message_bytes=args.max_message_bytes,
                             drain_timeout=args.drain_timeout)
    except ValueError as e:
        sys.exit(f"error: --{e}")
    endpoint = endpoint_config(args)
    import torch

    torch.set_num_threads(args.num_threads)
    rec = build_recognizer(args)
    if endpoint is not None:
        if rec.transducer:
            sys.exit("error: endpointing counts CTC blank frames: serve a transducer model with --endpoint false")
        rec = SegmentingRecognizer(rec, endpoint)
    return Server(lambda: Stream(rec.spawn()), config, page=page_html(rec.fs))


def main(cmd=None):
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s serve %(levelname)s %(message)s")
    if args.workers < 1:
        sys.exit(f"error: --workers {args.workers}: must be >= 1")
    if args.workers > 1:
        return run_workers(args, sys.argv[1:] if cmd is None else list(cmd))
    sock = None
    if args.listen_fd is not None:  # a worker: the parent's listening socket
        import socket

        sock = socket.socket(fileno=args.listen_fd)
    server = build_server(args)
    host = server.config.host

    def ready(s):
        print(f"serving ws://{host}:{s.port}/ (page: http://{host}:{s.port}/)", flush=True)

    try:
        asyncio.run(server.serve(ready=ready, sock=sock))
    except OSError as e:  # the port is taken, the host is not this machine's
        sys.exit(f"error: cannot listen on {host}:{server.config.port}: {e.strerror or e}")


def run_workers(args, argv) -> None:
    """``--workers N``: bind the port here, start N worker processes accepting on it (the kernel
    shares the connections out), print the ready line when all are ready, pass SIGTERM / SIGINT
    on (each drains its streams) and exit when they have; exit non-zero if one failed."""
    import math
    import signal
    import socket
    import subprocess

    try:
        sock = socket.create_server((args.host, args.port), backlog=512)
    except OSError as e:
        sys.exit(f"error: cannot listen on {args.host}:{args.port}: {e.strerror or e}")
    port = sock.getsockname()[1]
    share = math.ceil(args.max_streams / args.workers)
    rest = _drop_flags(argv, {"--workers": 1, "--listen_fd": 1, "--max_streams": 1})
    cmd = [sys.executable, "-m", "espnet_omni.bin.serve", *rest, "--max_streams", str(share),
           "--listen_fd", str(sock.fileno())]
    procs = [subprocess.Popen(cmd, pass_fds=[sock.fileno()], stdout=subprocess.PIPE, text=True)
             for _ in range(args.workers)]
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: [p.send_signal(signum) for p in procs if p.poll() is None])
    for p in procs:
        if not p.stdout.readline().startswith("serving "):
            for q in procs:
                q.kill()
            sys.exit(f"error: a worker did not start (exit {p.wait()}); see its messages above")
    sock.close()  # the workers hold it
    print(f"serving ws://{args.host}:{port}/ (page: http://{args.host}:{port}/; {args.workers} workers: "
          f"{' '.join(str(p.pid) for p in procs)})", flush=True)
    codes = [p.wait() for p in procs]
    if any(codes):
        sys.exit(f"error: worker exit codes {codes}")


def _drop_flags(argv, flags: dict):
    """``argv`` without the given flags (``--flag value`` and ``--flag=value``)."""
    out, skip = [], 0
    for a in argv:
        if skip:
            skip -= 1
            continue
        name = a.split("=", 1)[0]
        if name in flags:
            skip = 0 if "=" in a else flags[name]
            continue
        out.append(a)
    return out


if __name__ == "__main__":
    main()
