#!/usr/bin/env python3
"""Evaluate both modes of a model (Table B, local/run_table_b.sh stage 3) in one process.

Usage:
    python -m espnet_omni.bin.dual_mode_eval \
        --asr_train_config exp/asr_ctc_dual/config.yaml \
        --asr_model_file exp/asr_ctc_dual/valid.loss.ave.pth \
        --inference_config conf/decode_ctc.yaml --decode_name decode_ctc \
        --data_dir dump/raw/dev --data_dir dump/raw/test --out_dir exp/asr_ctc_dual/table_b
        [--format sparse] [--chunk_size 16 --left_chunks -1 --lookahead 0] [--beam_size 1]
        [--calibration_dir dump/raw/train --calibration_utts 200]

The sparsity of each mode's network comes from the training config
(:func:`mode_sparsities`): the streaming network is
``omni_conf.dual_mode.streaming_sparsity`` (0 without dual mode), the
full-context one is dense, except in a streaming model trained alone
(``dual_mode.full_weight: 0``). A stock ``encoder: conformer`` model is
evaluated as the dense network of an ``omni_conformer`` (same weights).

With ``--calibration_dir`` each network gets BatchNorm statistics re-estimated
in its own mode (the full-context one in full mode, the streaming one in
streaming mode) before it is exported and decoded, as Table A's exports and
the main job's are: a dual-mode supernet's running averages mix both modes'
forward passes (and every sparsity the omni space trained), which neither
network computes alone.

Writes, under --out_dir:
    subnet_{full,stream}.yaml     the two sub-networks (uniform sparsity)
    export_{full,stream}/         each exported (config.yaml, model.pth, export.json: sizes)
    export_full/<decode_name>/<set>/text   full-context decoding of the export with
                                  ESPnet's Speech2Text (--inference_config)
    stream/<set>/{text,latency.json}   chunk-by-chunk decoding of the streaming network
                                  on one thread: RTF, per-chunk compute, algorithmic latency
    export_stream/<decode_name>/<set>/text   the streaming network decoded by ESPnet's
                                  Speech2Text with the same --inference_config (and LM) as
                                  the full-context one, its encoder in streaming mode (the
                                  chunk-by-chunk encoder output, tested equal; then ESPnet's
                                  search over it): the main job's streaming WER, comparable
                                  with the full-context column (--stream_search false: skipped)

``--modes full`` (or ``stream``) evaluates one network only, e.g. a dense model's.
``--stream_sparsity S`` sets the streaming network's sparsity of a supernet whose
config has no fixed one (an omni supernet samples it).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
import yaml
from tqdm import tqdm

from espnet2.bin.asr_inference import Speech2Text
from espnet2.fileio.sound_scp import SoundScpReader
from espnet2.utils.types import str2bool
from espnet_omni.corpus.audio_check import require_finite
from espnet_omni.export import FORMATS, export_asr_model
from espnet_omni.search.bn_calib import add_calibration_arguments
from espnet_omni.inference.decode_data_dir import decode_data_dir
from espnet_omni.inference.streaming_recognizer import StreamingRecognizer
from espnet_omni.search.subnet_eval import calibrate_for_export
from espnet_omni.nets.chunk_config import StreamingConfig
from espnet_omni.sparsity.subnet import SubnetConfig
from espnet_omni.tasks import OmniASRTask, OmniSpeech2Text, as_omni_config, omni_asr_inference


def mode_sparsities(train_config: Mapping[str, Any], stream_sparsity: Optional[float] = None
                    ) -> tuple[float, float]:
    """``(full-context, streaming)`` sparsity of a trained model's two networks.

    >>> mode_sparsities({"encoder": "conformer"})
    (0.0, 0.0)
    >>> mode_sparsities({"omni_conf": {"dual_mode": {"streaming_sparsity": 0.7}}})
    (0.0, 0.7)
    >>> mode_sparsities({"omni_conf": {"dual_mode": {"streaming_sparsity": 0.7, "full_weight": 0.0}}})
    (0.7, 0.7)
    >>> mode_sparsities({"omni_conf": {"dual_mode": {"streaming_sparsity": None}}}, 0.7)
    (0.0, 0.7)
    """
    dual = (train_config.get("omni_conf") or {}).get("dual_mode") or {}
    s = float(dual.get("streaming_sparsity") or 0.0) if stream_sparsity is None else float(stream_sparsity)
    return (s if float(dual.get("full_weight", 1.0)) == 0.0 else 0.0), s


def decode_set(s2t: Speech2Text, data_dir: Path, out: Path, desc: str) -> float:
    """``s2t`` (ESPnet's Speech2Text) over ``data_dir/wav.scp`` -> ``out/text``; returns seconds.

    Raises :class:`~espnet_omni.corpus.audio_check.BadAudioError` naming an
    utterance whose audio holds NaN or inf.
    """
    reader = SoundScpReader(str(data_dir / "wav.scp"), dtype="float32")
    out.mkdir(parents=True, exist_ok=True)
    lines, start = [], time.perf_counter()
    for utt in tqdm(sorted(reader.keys()), desc=f"{desc} {data_dir.name}", unit="utt"):
        _, wav = reader[utt]
        require_finite(wav, utt, str(data_dir / "wav.scp"))
        with torch.no_grad():
            text = s2t(torch.from_numpy(wav))[0][0]
        lines.append(f"{utt} {text}".rstrip() + "\n")
    (out / "text").write_text("".join(lines))
    return time.perf_counter() - start


def streaming_speech2text(model: torch.nn.Module, config_path: Path, model_file: Path,
                          cfg: StreamingConfig, decode_conf: Mapping[str, Any]) -> Speech2Text:
    """ESPnet's Speech2Text over ``model`` as it is now (its active sub-network and BatchNorm
    statistics), the encoder in streaming mode with ``cfg``."""
    with omni_asr_inference("streaming"):
        s2t = Speech2Text(asr_train_config=str(config_path), asr_model_file=str(model_file),
                          device="cpu", **decode_conf)
    s2t.asr_model.load_state_dict(model.state_dict())
    enc = s2t.asr_model.encoder
    enc.set_active_subnet(model.encoder.get_active_subnet())
    enc.set_active_mode("streaming", cfg)
    s2t.asr_model.eval()
    return s2t


def full_decode_options(args: argparse.Namespace) -> dict[str, Any]:
    """Speech2Text options of the full-context decoding: ``--inference_config`` plus the LM.

    An inference config that fuses an LM (``lm_weight > 0``) without ``--lm_file`` is refused:
    ESPnet would decode without the LM but keep the config's length penalty, tuned with it.
    """
    conf = yaml.safe_load(args.inference_config.read_text()) if args.inference_config else {}
    conf = dict(conf or {})
    if (args.lm_train_config is None) != (args.lm_file is None):
        raise SystemExit("dual_mode_eval: give both --lm_train_config and --lm_file, or neither")
    if args.lm_file is not None:
        for f in (args.lm_train_config, args.lm_file):
            if not f.is_file():
                raise SystemExit(f"dual_mode_eval: {f} not found (the language model)")
        conf.update(lm_train_config=str(args.lm_train_config), lm_file=str(args.lm_file))
    elif float(conf.get("lm_weight", 0) or 0) > 0:
        raise SystemExit(
            f"dual_mode_eval: {args.inference_config} fuses a language model (lm_weight "
            f"{conf['lm_weight']}) but no --lm_train_config/--lm_file is given: ESPnet would decode without "
            "it and keep the penalty tuned with it; pass the LM, or a config without lm_weight")
    return conf


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--asr_train_config", type=Path, required=True)
    p.add_argument("--asr_model_file", type=Path, required=True)
    p.add_argument("--data_dir", type=Path, action="append", required=True, help="Kaldi dir; repeat per set")
    p.add_argument("--out_dir", type=Path, required=True)
    p.add_argument("--inference_config", type=Path, default=None,
                   help="Speech2Text options (YAML) of the full-context decoding, e.g. conf/decode_ctc.yaml")
    p.add_argument("--lm_train_config", type=Path, default=None,
                   help="language model of the full-context decoding (shallow fusion, lm_weight of "
                        "--inference_config): its config.yaml")
    p.add_argument("--lm_file", type=Path, default=None, help="its model file")
    p.add_argument("--decode_name", default="decode", help="full-context decode dir name in export_full/")
    p.add_argument("--format", default="sparse", choices=FORMATS, help="export format of both networks")
    p.add_argument("--num_threads", type=int, default=1, help="torch threads of the full-context decoding")
    p.add_argument("--chunk_size", type=int, default=None, help="streaming: C encoder frames")
    p.add_argument("--left_chunks", type=int, default=None, help="streaming: L chunks; -1 = all")
    p.add_argument("--lookahead", type=int, default=None, help="streaming: R frames")
    p.add_argument("--beam_size", type=int, default=1, help="chunk-by-chunk streaming: 1 = greedy")
    p.add_argument("--modes", nargs="+", choices=("full", "stream"), default=["full", "stream"],
                   help="the networks evaluated (a dense model alone: full)")
    p.add_argument("--stream_sparsity", type=float, default=None,
                   help="the streaming network's sparsity (default: omni_conf.dual_mode.streaming_sparsity)")
    p.add_argument("--stream_search", type=str2bool, default=True,
                   help="also decode the streaming network with --inference_config (and the LM), its "
                        "encoder in streaming mode -> export_stream/<decode_name>/")
    add_calibration_arguments(p, "each network's BatchNorm statistics on it, in the network's own mode")
    return p


def main(cmd=None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (dual_mode_eval) %(levelname)s: %(message)s")
    missing = [str(d) for d in args.data_dir if not (d / "wav.scp").is_file()]
    if missing:
        raise SystemExit(f"dual_mode_eval: no wav.scp in {missing}")
    if args.stream_sparsity is not None and not 0.0 <= args.stream_sparsity < 1.0:
        raise SystemExit(f"dual_mode_eval: --stream_sparsity {args.stream_sparsity}: expected a fraction in [0, 1)")
    config_path = as_omni_config(args.asr_train_config)
    train_config = yaml.safe_load(config_path.read_text())
    decode_conf = full_decode_options(args)
    s_full, s_stream = mode_sparsities(train_config, args.stream_sparsity)
    modes = [m for m in ("full", "stream") if m in args.modes]  # the streaming network last: its
    # BatchNorm statistics stay in the model for its decoding
    logging.info("%s: full-context sparsity %s, streaming sparsity %s (evaluated: %s)", args.asr_train_config,
                 s_full, s_stream, " ".join(modes))
    model, train_args = OmniASRTask.build_model_from_file(config_path, args.asr_model_file, "cpu")
    model.eval()
    enc = model.encoder
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    subnets = {}
    for mode in modes:
        s = s_full if mode == "full" else s_stream
        subnets[mode] = SubnetConfig.uniform(enc.prunable_layers(), s, enc.mask_spec)
        subnets[mode].to_yaml(out / f"subnet_{mode}.yaml")
        calibration = {}
        if args.calibration_dir is not None:
            calibration = calibrate_for_export(model, train_args, subnets[mode], args.calibration_dir,
                                               args.calibration_utts, "full" if mode == "full" else "streaming")
            logging.info("%s network: BatchNorm statistics of %d layers re-estimated on %d utts in %s mode",
                         mode, calibration["layers"], calibration["utts"], calibration["mode"])
        report = export_asr_model(model, train_config, subnets[mode], args.format, out / f"export_{mode}",
                                  bn_calibration=calibration)
        logging.info("export_%s: %s non-zero parameters, %s bytes", mode, report.nonzero_params, report.model_bytes)
    torch.set_num_threads(args.num_threads)
    if "full" in modes:
        s2t = OmniSpeech2Text(asr_train_config=str(out / "export_full" / "config.yaml"),
                              asr_model_file=str(out / "export_full" / "model.pth"), device="cpu", **decode_conf)
        for d in args.data_dir:
            sec = decode_set(s2t, d, out / "export_full" / args.decode_name / d.name, "full-context")
            logging.info("full-context %s: %.1f s", d.name, sec)
    if "stream" not in modes:
        return
    # Streaming: the same weights with the streaming sub-network's masks, chunk by chunk, one thread.
    enc.set_active_subnet(subnets["stream"])
    rec = StreamingRecognizer(model, None, args.beam_size, train_args)
    override = {k: getattr(args, k) for k in ("chunk_size", "left_chunks", "lookahead") if getattr(args, k) is not None}
    if override:
        rec.set_streaming_config(StreamingConfig.from_dict({**rec.cfg.to_dict(), **override}))
    if args.stream_search:
        s2t = streaming_speech2text(model, config_path, args.asr_model_file, rec.cfg, decode_conf)
        for d in args.data_dir:
            sec = decode_set(s2t, d, out / "export_stream" / args.decode_name / d.name, "streaming (search)")
            logging.info("streaming %s with --inference_config: %.1f s", d.name, sec)
    torch.set_num_threads(1)
    for d in args.data_dir:
        lat = decode_data_dir(rec, d, out / "stream" / d.name)
        logging.info("streaming %s: RTF %s (one thread), %s ms per chunk", d.name, lat["rtf"],
                     lat["chunk_compute_ms_mean"])


if __name__ == "__main__":
    main()
