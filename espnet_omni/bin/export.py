#!/usr/bin/env python3
"""Export a sub-network of a trained supernet as a standalone model directory.

Usage:
    python -m espnet_omni.bin.export \
        --asr_train_config exp/asr/config.yaml \
        --asr_model_file exp/asr/valid.loss.ave.pth \
        --subnet exp/search/subnet_80.yaml --format sparse \
        --calibration_dir dump/raw/train --out_dir exp/asr/export_80
Writes: <out_dir>/config.yaml, <out_dir>/model.pth, <out_dir>/export.json.
Decode: python -m espnet_omni.bin.asr_inference --asr_train_config
    <out_dir>/config.yaml --asr_model_file <out_dir>/model.pth ...
    (--format dense also loads with stock espnet2.bin.asr_inference).
"""

import argparse
import logging
import sys
from pathlib import Path

import yaml

from espnet_omni.bin.jobs import run_jobs
from espnet_omni.export import DTYPES, FORMATS, export_asr_model
from espnet_omni.search.bn_calib import add_calibration_arguments
from espnet_omni.search.subnet_eval import calibrate_for_export
from espnet_omni.nets.packed_state import CODECS
from espnet_omni.sparsity.subnet import SubnetConfig
from espnet_omni.tasks import OmniASRTask, as_omni_config


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--asr_train_config", required=True, help="experiment config.yaml")
    p.add_argument("--asr_model_file", required=True, help="supernet checkpoint .pth")
    p.add_argument("--subnet", required=True, help="SubnetConfig YAML")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--out_dir", required=True)
    p.add_argument("--dtype", default="float32", choices=tuple(DTYPES),
                   help="storage dtype of floating tensors (float16: ~half size)")
    p.add_argument("--codec", default="zlib", choices=CODECS,
                   help="packed weights: zlib-compressed or raw bitmask + values "
                        "(both lossless)")
    add_calibration_arguments(p, "the sub-network's BatchNorm statistics on it before export")
    p.add_argument("--dense_copy", default=None,
                   help="also write the sub-network in format 'dense' (same recalibrated statistics) to this "
                   "dir: stock ESPnet loads it, and so does the supernet's own config.yaml (same parameter "
                   "names; the pruned weights are zeros), which decodes it in streaming mode too")
    p.add_argument("--calibration_mode", default="full", choices=("full", "streaming"),
                   help="encoder mode of the recalibration: the mode the exported model will run in "
                   "(streaming: the sparse network of a dual-mode supernet)")
    return p


def main(cmd=None):
    """Export; ``cmd`` defaults to ``sys.argv``. ``--jobs FILE``: one command line of this program
    per line (shell-quoted), exported one after the other in this process (run.sh stage 9
    exports every Pareto model so)."""
    cmd = list(sys.argv[1:] if cmd is None else cmd)
    if run_jobs(cmd, main):
        return
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:  # a wrong, broken or missing sub-network YAML: one line naming it, before the model loads
        subnet = SubnetConfig.from_yaml(Path(args.subnet))
    except ValueError as e:
        sys.exit(f"error: --subnet {e}")
    config = as_omni_config(args.asr_train_config)  # a stock conformer exports as its dense network
    model, train_args = OmniASRTask.build_model_from_file(config, args.asr_model_file, "cpu")
    with open(config, encoding="utf-8") as f:
        train_config = yaml.safe_load(f)
    calibration = {}
    if args.calibration_dir is not None:
        calibration = calibrate_for_export(model, train_args, subnet, args.calibration_dir,
                                           args.calibration_utts, mode=args.calibration_mode)
        logging.info("BatchNorm statistics of %d layers re-estimated on %d utts of %s",
                     calibration["layers"], calibration["utts"], args.calibration_dir)
    report = export_asr_model(model, train_config, subnet, args.format, args.out_dir, args.dtype,
                              args.codec, bn_calibration=calibration)
    if args.dense_copy is not None:
        export_asr_model(model, train_config, subnet, "dense", args.dense_copy, args.dtype,
                         args.codec, bn_calibration=calibration)
    print(report.to_json(), end="")


if __name__ == "__main__":
    main()
