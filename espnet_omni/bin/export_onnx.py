#!/usr/bin/env python3
"""Export a trained model (or an exported sub-network) to ONNX, full-context and streaming.

Usage:
    python -m espnet_omni.bin.export_onnx \
        --asr_train_config exp/asr/export_70/config.yaml \
        --asr_model_file exp/asr/export_70/model.pth \
        --out_dir exp/asr/export_70/onnx [--modes full streaming] \
        [--chunk_size 16 --left_chunks -1] [--int8 true] [--subnet subnet.yaml] \
        [--lm_train_config exp/lm_char/config.yaml --lm_file exp/lm_char/valid.loss.ave.pth]
Writes: <out_dir>/full.onnx, <out_dir>/streaming.onnx (+ *.int8.onnx), <out_dir>/onnx.json;
with an RNN LM (lm: seq_rnn) also <out_dir>/lm.onnx (+ lm.int8.onnx), one batched LM step
for shallow fusion (espnet_omni.export.onnx_lm).
Run: espnet_omni.inference.onnx_recognizer.OnnxStreamingRecognizer(<out_dir>), or
    python -m espnet_omni.bin.asr_inference_onnx (a data dir, chunk by chunk).

The model directory can be a training experiment (a dense Conformer or a
supernet, whose ``--subnet`` is then exported with its masks applied) or an
export of ``espnet_omni.bin.export`` (``--format structured`` gives the
smallest graphs). A component the graphs cannot express stops the export with
its name (:class:`~espnet_omni.export.onnx_export.OnnxExportError`).
"""

import argparse
import logging
import sys

from espnet2.utils.types import str2bool

from espnet_omni.export.onnx_export import OnnxExportError, export_onnx
from espnet_omni.export.onnx_lm import export_onnx_lm, load_lm_for_export
from espnet_omni.tasks.lm_check import TokenListMismatch
from espnet_omni.nets.chunk_config import StreamingConfig


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--asr_train_config", required=True, help="config.yaml of the model")
    p.add_argument("--asr_model_file", required=True, help="its .pth")
    p.add_argument("--out_dir", required=True)
    p.add_argument("--modes", nargs="+", default=["full", "streaming"], choices=["full", "streaming"])
    p.add_argument("--chunk_size", type=int, default=None,
                   help="streaming chunk in encoder frames (default: the encoder's streaming config, else 16)")
    p.add_argument("--left_chunks", type=int, default=None,
                   help="chunks of left context (-1: all; default: the encoder's streaming config, else -1)")
    p.add_argument("--subnet", default=None, help="SubnetConfig YAML to activate on a supernet")
    p.add_argument("--int8", type=str2bool, default=False, help="also write dynamic int8 graphs")
    p.add_argument("--lm_train_config", default=None, help="an RNN LM's config.yaml to export as lm.onnx")
    p.add_argument("--lm_file", default=None, help="its model file")
    return p


def main(cmd=None):
    """Export; ``cmd`` defaults to ``sys.argv``."""
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    from espnet_omni.nets.omni_conformer import supernet_encoder
    from espnet_omni.sparsity.subnet import SubnetConfig
    from espnet_omni.tasks import ModelFileError, OmniASRTask, as_omni_config

    lm = None
    if (args.lm_train_config is None) != (args.lm_file is None):
        sys.exit("error: give both --lm_train_config and --lm_file, or neither")
    if args.lm_train_config is not None:
        try:
            lm = load_lm_for_export(args.asr_train_config, args.lm_train_config, args.lm_file)
        except (OnnxExportError, TokenListMismatch, ModelFileError) as e:
            sys.exit(f"error: {e}")
    try:  # a missing config or model file, a truncated checkpoint: one line naming it
        config = as_omni_config(args.asr_train_config)
        model, train_args = OmniASRTask.build_model_from_file(config, args.asr_model_file, "cpu")
    except ModelFileError as e:
        sys.exit(f"error: {e}")
    if args.subnet is not None:
        supernet_encoder(model, f"--subnet {args.subnet}").set_active_subnet(SubnetConfig.from_yaml(args.subnet))
    base = getattr(model.encoder, "streaming_config", None) or StreamingConfig(chunk_size=16)
    cfg = StreamingConfig(
        chunk_size=base.chunk_size if args.chunk_size is None else args.chunk_size,
        left_chunks=base.left_chunks if args.left_chunks is None else args.left_chunks)
    try:
        meta = export_onnx(model.eval(), args.out_dir, cfg, tuple(args.modes), int8=args.int8,
                           token_type=train_args.token_type, bpemodel=train_args.bpemodel)
        if lm is not None:
            meta = export_onnx_lm(lm, args.out_dir, int8=args.int8)
    except OnnxExportError as e:
        print(f"error: {args.asr_train_config}: {e}", file=sys.stderr)
        sys.exit(1)
    print(" ".join(f"{args.out_dir}/{g}" for g in meta["graphs"].values()))


if __name__ == "__main__":
    main()
