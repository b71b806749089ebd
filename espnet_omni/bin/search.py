#!/usr/bin/env python3
"""Evolutionary search for the best sub-network of a supernet per size budget.

Usage:
    python -m espnet_omni.bin.search \
        --asr_train_config exp/x/config.yaml --asr_model_file exp/x/valid.loss.ave.pth \
        --data_dir dump/raw/dev --budgets 0.5 0.3 0.2 --budget_unit fraction \
        --metric wer --tie per_layer --population 16 --generations 12 --seed 0 \
        --max_utts 200 --calibration_dir dump/raw/train --out_dir exp/x/search
Writes: <out_dir>/{front.csv,front.yaml,search.json}, one SubnetConfig YAML
<out_dir>/subnet_<budget>.yaml per budget, and the score cache
<out_dir>/scores.jsonl (a rerun with the same options resumes from it).
Export one: python -m espnet_omni.bin.export --subnet <out_dir>/subnet_0.3.yaml ...
"""

import argparse
import logging
import sys
from pathlib import Path

import yaml

from espnet_omni.evolutionary_search import EvolutionConfig
from espnet_omni.search.bn_calib import add_calibration_arguments
from espnet_omni.search.subnet_eval import DEFAULT_BATCH_SECONDS, HEADS, METRICS
from espnet_omni.search.subnet_search import (
    BUDGET_UNITS,
    SubnetSearchConfig,
    search_from_files,
)
from espnet_omni.sparsity.storage import STORAGES
from espnet_omni.sparsity.subnet import DEFAULT_CHOICES, TIES


def trained_space(asr_train_config: str) -> dict:
    """``choices`` / ``tie`` of the supernet's ``omni_conf`` (empty if it has none):
    sub-networks outside what the supernet was trained on are not worth scoring."""
    path = Path(asr_train_config)
    if not path.is_file():
        raise FileNotFoundError(f"--asr_train_config {path}: no such file")
    conf = yaml.safe_load(path.read_text()) or {}
    omni = conf.get("omni_conf") or {}
    if not isinstance(omni, dict):
        raise ValueError(f"{path}: omni_conf must be a mapping, got {type(omni).__name__}")
    space = {k: omni[k] for k in ("choices", "tie") if omni.get(k) is not None}
    if omni.get("dual_mode"):
        space["mode"] = "streaming"
    return space


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--asr_train_config", required=True, help="supernet config.yaml")
    p.add_argument("--asr_model_file", required=True, help="supernet checkpoint .pth")
    p.add_argument("--data_dir", required=True, help="dev dir with wav.scp and text")
    p.add_argument("--out_dir", required=True)
    p.add_argument("--budgets", type=float, nargs="+", required=True)
    p.add_argument("--budget_unit", default="fraction", choices=BUDGET_UNITS,
                   help="fraction of the dense encoder's params, non-zero params, bytes, or ms of "
                        "encoder + CTC compute per second of audio on this machine (a structured "
                        "'group' supernet; latency table measured once into OUT_DIR/latency_table.json)")
    p.add_argument("--metric", default="wer", choices=METRICS,
                   help="dev-set WER / CER of greedy decoding, or the mean loss, through --head")
    p.add_argument("--head", default="auto", choices=("auto", *HEADS),
                   help="what scores a candidate: ctc (CTC greedy, CTC loss) or transducer (greedy RNN-T, "
                        "transducer loss of a transducer model); auto: the transducer when the model has one")
    p.add_argument("--choices", type=float, nargs="+", default=None,
                   help="sparsities a group may take; default: the supernet's own training choices "
                        f"(omni_conf.choices of --asr_train_config), else {list(DEFAULT_CHOICES)}")
    p.add_argument("--tie", default=None, choices=TIES,
                   help="default: the supernet's omni_conf.tie, else per_layer")
    p.add_argument("--storage", default="auto", choices=STORAGES,
                   help="byte cost model (--budget_unit bytes)")
    p.add_argument("--latency_threads", type=int, default=1, help="torch threads of the ms budget")
    p.add_argument("--latency_seconds", type=float, default=4.0,
                   help="audio length the latency table is timed on (--budget_unit ms)")
    p.add_argument("--mode", default="auto", choices=("auto", "full", "streaming"),
                   help="encoder mode the candidates are scored in; auto: streaming for a dual-mode "
                   "supernet (omni_conf.dual_mode: its sparse networks are the streaming ones), else full")
    p.add_argument("--population", type=int, default=16)
    p.add_argument("--generations", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max_utts", type=int, default=None, help="N dev utterances spread evenly over wav.scp (every speaker kept)")
    p.add_argument("--batch_seconds", type=float, default=DEFAULT_BATCH_SECONDS)
    add_calibration_arguments(p, "each candidate's BatchNorm statistics on it before scoring "
                                 "(export with the same --calibration_dir)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no_progress", action="store_true", help="no tqdm bars")
    return p


def main(cmd=None):
    """Search; ``cmd`` defaults to ``sys.argv``."""
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    trained = trained_space(args.asr_train_config)
    if args.choices is None:
        args.choices = trained.get("choices") or list(DEFAULT_CHOICES)
    if args.tie is None:
        args.tie = trained.get("tie") or "per_layer"
    if args.mode == "auto":
        args.mode = trained.get("mode", "full")
    logging.info("search space: choices %s, tie %s; encoder mode %s", args.choices, args.tie, args.mode)
    try:  # a bad budget, an impossible one, a latency budget on a supernet without groups: one line
        summary = _search(args)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    print(summary.to_json(), end="")


def _search(args):
    config = SubnetSearchConfig(
        budgets=args.budgets, budget_unit=args.budget_unit, metric=args.metric,
        choices=tuple(args.choices), tie=args.tie, storage=args.storage,
        evolution=EvolutionConfig(population=args.population, generations=args.generations,
                                  seed=args.seed, progress=not args.no_progress),
        max_utts=args.max_utts, batch_seconds=args.batch_seconds,
        calibration_utts=args.calibration_utts, latency_threads=args.latency_threads,
        latency_seconds=args.latency_seconds, mode=args.mode, head=args.head,
    )
    return search_from_files(args.asr_train_config, args.asr_model_file, args.data_dir,
                             args.out_dir, config, device=args.device,
                             calibration_dir=args.calibration_dir)


if __name__ == "__main__":
    main()
