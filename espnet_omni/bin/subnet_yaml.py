#!/usr/bin/env python3
"""Write a uniform-sparsity SubnetConfig YAML for a trained supernet's encoder.

Usage:
    python -m espnet_omni.bin.subnet_yaml --asr_train_config exp/x/config.yaml \
        --sparsity 0.7 --out exp/x/subnet.yaml
Writes: --out (every prunable layer of the encoder at --sparsity, the encoder's mask spec)
        and <out without .yaml>.json: the encoder's non-zero parameters and bytes at that
        sub-network (the search's cost model, so budgets compare like with like).
"""

import argparse
import json
from pathlib import Path

from espnet_omni.nets.omni_conformer import NotASupernetError, supernet_encoder
from espnet_omni.sparsity.subnet import SubnetConfig
from espnet_omni.tasks import OmniASRTask, as_omni_config


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--asr_train_config", type=Path, required=True)
    p.add_argument("--sparsity", type=float, required=True, help="in [0, 1)")
    p.add_argument("--out", type=Path, required=True)
    return p


def main(cmd=None) -> None:
    args = get_parser().parse_args(cmd)
    # a stock conformer config: its dense network (sparsity 0) as a supernet's
    model, _ = OmniASRTask.build_model_from_file(as_omni_config(args.asr_train_config), None, "cpu")
    try:
        enc = supernet_encoder(model, str(args.asr_train_config))
    except NotASupernetError as e:
        raise SystemExit(str(e)) from None
    cfg = SubnetConfig.uniform(enc.prunable_layers(), args.sparsity, enc.mask_spec)
    cfg.to_yaml(args.out)
    enc.set_active_subnet(cfg)
    info = {"sparsity": args.sparsity, "encoder_nonzero_params": enc.active_nonzero_params(),
            "encoder_bytes": enc.active_size_bytes()}
    args.out.with_suffix(".json").write_text(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
