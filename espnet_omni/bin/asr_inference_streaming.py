#!/usr/bin/env python3
"""Streaming CTC decoding, chunk by chunk, with latency measurements.

Usage:
    python -m espnet_omni.bin.asr_inference_streaming \
        --asr_train_config exp/asr/config.yaml \
        --asr_model_file exp/asr/valid.loss.best.pth \
        --data_dir dump/raw/test --output_dir exp/asr/decode_stream \
        [--chunk_size 16 --left_chunks -1 --lookahead 0 --beam_size 1] [--subnet subnet.yaml]
Writes: <output_dir>/text (Kaldi: "utt text"), <output_dir>/latency.json
(real-time factor on --num_threads threads, mean/max per-chunk compute ms,
algorithmic latency ms = chunk + look-ahead + front-end context).
Unset chunk options fall back to the encoder's ``streaming`` config.
"""

import argparse

import torch

from espnet_omni.inference.streaming import StreamingRecognizer
from espnet_omni.inference.streaming_decode import decode_data_dir
from espnet_omni.nets.streaming import StreamingConfig


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--asr_train_config", required=True)
    p.add_argument("--asr_model_file", required=True)
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
    return p


def main(cmd=None):
    """Decode; ``cmd`` defaults to ``sys.argv``."""
    args = get_parser().parse_args(cmd)
    torch.set_num_threads(args.num_threads)
    rec = StreamingRecognizer.from_files(args.asr_train_config, args.asr_model_file,
                                         beam_size=args.beam_size, subnet=args.subnet)
    override = {k: getattr(args, k) for k in
                ("chunk_size", "left_chunks", "lookahead", "lookahead_layers")
                if getattr(args, k) is not None}
    if override:
        cfg = StreamingConfig.from_dict({**rec.cfg.to_dict(), **override})
        rec.set_streaming_config(cfg)
    decode_data_dir(rec, args.data_dir, args.output_dir)


if __name__ == "__main__":
    main()
