#!/usr/bin/env python3
"""Streaming CTC decoding, chunk by chunk, with latency measurements.

Usage:
    python -m espnet_omni.bin.asr_inference_streaming \
        --asr_train_config exp/asr/config.yaml \
        --asr_model_file exp/asr/valid.loss.best.pth \
        --data_dir dump/raw/test --output_dir exp/asr/decode_stream \
        [--chunk_size 16 --left_chunks -1 --lookahead 0 --beam_size 1] [--subnet subnet.yaml] \
        [--on_error fail|drop] \
        [--endpoint true [--endpoint_conf rule2_min_trailing_silence=0.6]]  # cut at pauses: segments.txt
        [--lm_train_config exp/lm_char/config.yaml --lm_file exp/lm_char/valid.loss.ave.pth \
         --decode_config conf/decode_ctc_lm.yaml]     # CTC prefix beam search + LM, chunk by chunk
    python -m espnet_omni.bin.asr_inference_streaming --onnx_dir exp/asr/onnx [--int8] \
        --data_dir dump/raw/test --output_dir exp/asr/decode_onnx     # ONNX Runtime
Writes: <output_dir>/text (Kaldi: "utt text"), <output_dir>/latency.json
(real-time factor on --num_threads threads, mean/max per-chunk compute ms,
algorithmic latency ms = chunk + look-ahead + front-end context).
Unset chunk options fall back to the encoder's ``streaming`` config.
With an LM, every chunk is decoded by CTC prefix beam search with the LM fused
(``inference/ctc_decoder.CTCPrefixBeamLM``); ``--decode_config`` (the recipe's
ESPnet inference config) gives ``beam_size``, ``lm_weight`` and ``penalty`` (the
length bonus per token), each overridden by its flag. With ``--onnx_dir`` the LM is the
export's ``lm.onnx`` (``bin/export_onnx --lm_train_config --lm_file``), fused when lm_weight > 0.
A bad utterance (unreadable; no samples; cut short; NaN or inf samples; another
sample rate than the model's; several channels) is an error naming its id and file (exit code 1);
with ``--on_error drop`` it is skipped, logged with its id and reason, left
out of ``text`` (scored as all deleted) and counted in latency.json.
With ``--endpoint true`` each utterance is cut into segments where the CTC frames
are blank long enough (WeNet / sherpa-onnx endpointing, ``inference/endpoint.py``;
rules by ``--endpoint_conf key=value``, seconds, ``null`` = off: rule1_min_trailing_silence
5.0 with nothing decoded, rule2_min_trailing_silence 0.6 after speech,
rule3_max_segment_length 20.0; blank_threshold null = argmax), the recognizer reset
at each cut: <output_dir>/segments.txt ("utt seg_index start end text", seconds)
beside ``text`` (the segments' texts joined, scored as usual).
"""

import argparse
import sys
from pathlib import Path
from typing import Optional

import torch
from espnet2.utils.nested_dict_action import NestedDictAction
from espnet2.utils.types import str2bool

from espnet_omni.bin.jobs import run_jobs
from espnet_omni.corpus.audio_check import BadAudioError
from espnet_omni.inference.decode_data_dir import (
    ON_ERROR,
    NotStreamableError,
    decode_data_dir,
    require_streamable_config,
)
from espnet_omni.inference.endpoint import EndpointConfig
from espnet_omni.inference.streaming_recognizer import StreamingRecognizer
from espnet_omni.nets.chunk_config import StreamingConfig
from espnet_omni.tasks.checkpoint import ModelFileError, readable_checkpoints


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_recognizer_args(p)
    p.add_argument("--data_dir", required=True, help="Kaldi data dir with wav.scp")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--on_error", choices=ON_ERROR, default="fail",
                   help="a bad utterance (unreadable, empty, cut short, NaN/inf, wrong sample rate, several channels): "
                   "fail = stop naming it; drop = skip it (logged, counted; scored as all deleted)")
    return p


def add_recognizer_args(p: argparse.ArgumentParser) -> None:
    """The flags :func:`build_recognizer` and :func:`endpoint_config` read (the server's too)."""
    p.add_argument("--asr_train_config", default=None)
    p.add_argument("--asr_model_file", default=None)
    p.add_argument("--onnx_dir", default=None,
                   help="decode with ONNX Runtime: a dir of espnet_omni.bin.export_onnx (instead of "
                   "--asr_train_config/--asr_model_file; its chunk config is fixed at export)")
    p.add_argument("--int8", action="store_true", help="with --onnx_dir: the int8 graph")
    p.add_argument("--chunk_size", type=int, default=None, help="C encoder frames")
    p.add_argument("--left_chunks", type=int, default=None, help="L chunks; -1 = all")
    p.add_argument("--lookahead", type=int, default=None, help="R frames, 0..C")
    p.add_argument("--lookahead_layers", type=int, default=None, help="-1 = all blocks")
    p.add_argument("--beam_size", type=int, default=None,
                   help="1 = CTC greedy (default without an LM); > 1 = CTC prefix beam search")
    p.add_argument("--lm_train_config", default=None, help="ESPnet LM config (run.sh stage 6) to fuse")
    p.add_argument("--lm_file", default=None, help="its model file")
    p.add_argument("--decode_config", default=None,
                   help="ESPnet inference YAML (e.g. conf/decode_ctc_lm.yaml): beam_size, lm_weight, penalty")
    p.add_argument("--lm_weight", type=float, default=None, help="LM weight (ESPnet's lm_weight)")
    p.add_argument("--penalty", type=float, default=None, help="length bonus per token (ESPnet's penalty)")
    p.add_argument("--num_threads", type=int, default=1)
    p.add_argument("--subnet", default=None,
                   help="SubnetConfig YAML to activate on a supernet encoder (sparse streaming model)")
    p.add_argument("--endpoint", type=str2bool, default=False,
                   help="cut each utterance into segments at endpoints (CTC blank runs): writes segments.txt")
    p.add_argument("--endpoint_conf", action=NestedDictAction, default=dict(),
                   help="endpoint rules as key=value (seconds; null = off): rule1_min_trailing_silence (5.0), "
                   "rule2_min_trailing_silence (0.6), rule3_max_segment_length (20.0), blank_threshold (null)")


def endpoint_config(args):
    """The :class:`EndpointConfig` of ``--endpoint`` / ``--endpoint_conf``, or None; exits naming
    the key on a bad one."""
    if not args.endpoint:
        if args.endpoint_conf:
            sys.exit("error: --endpoint_conf needs --endpoint true")
        return None
    try:
        return EndpointConfig.from_dict(args.endpoint_conf)
    except ValueError as e:
        sys.exit(f"error: --endpoint_conf: {e}")


DECODE_KEYS = ("beam_size", "lm_weight", "penalty")
IGNORED_KEYS = ("ctc_weight", "nbest", "maxlenratio", "minlenratio")


def read_decode_config(path) -> dict:
    """The streaming decoder's keys of an ESPnet inference YAML (``None``: ``{}``); exits naming
    the file and key on a bad one."""
    if path is None:
        return {}
    import yaml

    path = Path(path)
    if not path.is_file():
        sys.exit(f"error: --decode_config {path}: not found")
    conf = yaml.safe_load(path.read_text()) or {}
    if not isinstance(conf, dict):
        sys.exit(f"error: --decode_config {path}: expected a YAML mapping of {', '.join(DECODE_KEYS)}")
    unknown = sorted(set(conf) - set(DECODE_KEYS) - set(IGNORED_KEYS))
    if unknown:
        sys.exit(f"error: --decode_config {path}: key(s) {', '.join(unknown)} not used by the streaming "
                 f"CTC decoder (valid: {', '.join(DECODE_KEYS + IGNORED_KEYS)})")
    if float(conf.get("ctc_weight", 1.0)) != 1.0:
        sys.exit(f"error: --decode_config {path}: ctc_weight {conf['ctc_weight']}: the streaming decoder "
                 "scores CTC alone (ctc_weight 1.0); an attention decoder cannot stream")
    return {k: conf[k] for k in DECODE_KEYS if k in conf}


def search_options(decode_config=None, lm_given: Optional[bool] = None, **flags) -> dict:
    """``beam_size``, ``lm_weight``, ``penalty``: the ``flags`` (None = unset), else
    ``decode_config``'s, else greedy without an LM (beam 10 with one). ``lm_given``: whether an
    LM was given (PyTorch); None = one is used when lm_weight > 0 (ONNX's ``lm.onnx``). Exits
    naming the key on a bad config or an lm_weight without an LM."""
    unknown = sorted(set(flags) - set(DECODE_KEYS))
    if unknown:
        raise TypeError(f"search_options: unknown option(s) {', '.join(unknown)}")
    conf = read_decode_config(decode_config)
    out = {k: flags[k] if flags.get(k) is not None else conf.get(k) for k in DECODE_KEYS}
    out["lm_weight"] = float(out["lm_weight"] or 0.0)
    out["penalty"] = float(out["penalty"] or 0.0)
    if out["lm_weight"] and lm_given is False:  # its penalty was tuned with the LM: refuse, don't decode without it
        where = "--lm_weight" if flags.get("lm_weight") else f"--decode_config {decode_config} (lm_weight)"
        sys.exit(f"error: {where} > 0 needs --lm_train_config and --lm_file (or --lm_weight 0)")
    has_lm = lm_given if lm_given is not None else out["lm_weight"] > 0
    out["beam_size"] = int(out["beam_size"] if out["beam_size"] is not None else (10 if has_lm else 1))
    return out


CHUNK_KEYS = ("chunk_size", "left_chunks", "lookahead", "lookahead_layers")


def build_recognizer(args):
    """The recognizer of these flags: :class:`OnnxStreamingRecognizer` with ``--onnx_dir``, else
    :class:`StreamingRecognizer` (the LM fused when given); exits with one line on a user's mistake."""
    if (args.lm_train_config is None) != (args.lm_file is None):
        sys.exit("error: give both --lm_train_config and --lm_file, or neither")
    onnx = getattr(args, "onnx_dir", None)
    opts = search_options(args.decode_config, lm_given=None if onnx else args.lm_train_config is not None,
                          **{k: getattr(args, k, None) for k in DECODE_KEYS})
    override = {k: getattr(args, k) for k in CHUNK_KEYS if getattr(args, k, None) is not None}
    if onnx is not None:
        given = [f"--{k}" for k in ("asr_train_config", "asr_model_file", "subnet", "lm_train_config", "lm_file")
                 if getattr(args, k)]
        given += [f"--{k}" for k in override]
        if given:
            sys.exit(f"error: --onnx_dir decodes the exported graph as it is; drop {' '.join(given)}")
        from espnet_omni.inference.onnx_recognizer import OnnxStreamingRecognizer
        try:
            return OnnxStreamingRecognizer(onnx, beam_size=opts["beam_size"], threads=args.num_threads,
                                           int8=args.int8, lm_weight=opts["lm_weight"], length_bonus=opts["penalty"])
        except (ValueError, FileNotFoundError) as e:
            sys.exit(f"error: --onnx_dir {e}")
    if args.asr_train_config is None or args.asr_model_file is None:
        sys.exit("error: give --asr_train_config and --asr_model_file, or --onnx_dir")
    try:  # a missing or broken model file (the LM's too), an exported sub-network: one line
        require_streamable_config(args.asr_train_config, args.asr_model_file)
        with readable_checkpoints():
            rec = StreamingRecognizer.from_files(args.asr_train_config, args.asr_model_file,
                                                 beam_size=opts["beam_size"], subnet=args.subnet,
                                                 lm_train_config=args.lm_train_config, lm_file=args.lm_file,
                                                 lm_weight=opts["lm_weight"], length_bonus=opts["penalty"])
    except (ModelFileError, NotStreamableError, ValueError, NotImplementedError) as e:
        sys.exit(f"error: {e}")  # a bad option (beam size, LM token list), a model that cannot stream
    if override:
        rec.set_streaming_config(StreamingConfig.from_dict({**rec.cfg.to_dict(), **override}))
    return rec


def main(cmd=None):
    """Decode; ``cmd`` defaults to ``sys.argv``. ``--jobs FILE``: one command line of this
    program per line (shell-quoted), decoded one after the other in this process (the recipe's
    stage 10 streams every Pareto model so: the imports paid once)."""
    cmd = list(sys.argv[1:] if cmd is None else cmd)
    if run_jobs(cmd, main):
        return
    args = get_parser().parse_args(cmd)
    endpoint = endpoint_config(args)
    torch.set_num_threads(args.num_threads)
    rec = build_recognizer(args)
    if endpoint is not None and rec.transducer:
        sys.exit("error: --endpoint true counts CTC blank frames: a transducer model streams without it")
    try:
        decode_data_dir(rec, args.data_dir, args.output_dir, on_error=args.on_error, endpoint=endpoint)
    except BadAudioError as e:
        print(f"error: {e} (--on_error drop skips such utterances)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
