#!/usr/bin/env python3
"""Streaming CTC decoding, chunk by chunk, with latency measurements.

Usage:
    python -m espnet_omni.bin.asr_inference_streaming \
        --asr_train_config exp/asr/config.yaml \
        --asr_model_file exp/asr/valid.loss.best.pth \
        --data_dir dump/raw/test --output_dir exp/asr/decode_stream \
        [--chunk_size 16 --left_chunks -1 --lookahead 0 --beam_size 1] [--subnet subnet.yaml] \
        [--on_error fail|drop]
    python -m espnet_omni.bin.asr_inference_streaming --onnx_dir exp/asr/onnx [--int8] \
        --data_dir dump/raw/test --output_dir exp/asr/decode_onnx     # ONNX Runtime
Writes: <output_dir>/text (Kaldi: "utt text"), <output_dir>/latency.json
(real-time factor on --num_threads threads, mean/max per-chunk compute ms,
algorithmic latency ms = chunk + look-ahead + front-end context).
Unset chunk options fall back to the encoder's ``streaming`` config.
A bad utterance (unreadable; NaN or inf samples; another sample rate than the
model's; several channels) is an error naming its id and file (exit code 1);
with ``--on_error drop`` it is skipped, logged with its id and reason, left
out of ``text`` (scored as all deleted) and counted in latency.json.
"""

import argparse
import sys

import torch

from espnet_omni.corpus.audio_check import BadAudioError
from espnet_omni.inference.decode_data_dir import ON_ERROR, decode_data_dir
from espnet_omni.inference.streaming_recognizer import StreamingRecognizer
from espnet_omni.nets.chunk_config import StreamingConfig


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--asr_train_config", default=None)
    p.add_argument("--asr_model_file", default=None)
    p.add_argument("--onnx_dir", default=None,
                   help="decode with ONNX Runtime: a dir of espnet_omni.bin.export_onnx (instead of "
                   "--asr_train_config/--asr_model_file; its chunk config is fixed at export)")
    p.add_argument("--int8", action="store_true", help="with --onnx_dir: the int8 graph")
    p.add_argument("--data_dir", required=True, help="Kaldi data dir with wav.scp")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--chunk_size", type=int, default=None, help="C encoder frames")
    p.add_argument("--left_chunks", type=int, default=None, help="L chunks; -1 = all")
    p.add_argument("--lookahead", type=int, default=None, help="R frames, 0..C")
    p.add_argument("--lookahead_layers", type=int, default=None, help="-1 = all blocks")
    p.add_argument("--beam_size", type=int, default=1, help="1 = CTC greedy")
    p.add_argument("--num_threads", type=int, default=1)
    p.add_argument("--subnet", default=None,
                   help="SubnetConfig YAML to activate on a supernet encoder (sparse streaming model)")
    p.add_argument("--on_error", choices=ON_ERROR, default="fail",
                   help="a bad utterance (unreadable, NaN/inf, wrong sample rate, several channels): "
                   "fail = stop naming it; drop = skip it (logged, counted; scored as all deleted)")
    return p


def main(cmd=None):
    """Decode; ``cmd`` defaults to ``sys.argv``."""
    args = get_parser().parse_args(cmd)
    torch.set_num_threads(args.num_threads)
    override = {k: getattr(args, k) for k in
                ("chunk_size", "left_chunks", "lookahead", "lookahead_layers")
                if getattr(args, k) is not None}
    if args.onnx_dir is not None:
        given = [f"--{k}" for k in ("asr_train_config", "asr_model_file", "subnet") if getattr(args, k)]
        given += [f"--{k}" for k in override]
        if given:
            sys.exit(f"error: --onnx_dir decodes the exported graph as it is; drop {' '.join(given)}")
        from espnet_omni.inference.onnx_recognizer import OnnxStreamingRecognizer
        rec = OnnxStreamingRecognizer(args.onnx_dir, beam_size=args.beam_size,
                                      threads=args.num_threads, int8=args.int8)
    elif args.asr_train_config is None or args.asr_model_file is None:
        sys.exit("error: give --asr_train_config and --asr_model_file, or --onnx_dir")
    else:
        rec = StreamingRecognizer.from_files(args.asr_train_config, args.asr_model_file,
                                             beam_size=args.beam_size, subnet=args.subnet)
    if override:
        cfg = StreamingConfig.from_dict({**rec.cfg.to_dict(), **override})
        rec.set_streaming_config(cfg)
    try:
        decode_data_dir(rec, args.data_dir, args.output_dir, on_error=args.on_error)
    except BadAudioError as e:
        print(f"error: {e} (--on_error drop skips such utterances)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
