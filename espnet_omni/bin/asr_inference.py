#!/usr/bin/env python3
"""ASR decoding: ESPnet's asr_inference, building the model with OmniASRTask.

Usage:
    python -m espnet_omni.bin.asr_inference --ngpu 0 --batch_size 1 \
        --data_path_and_name_and_type data/test/wav.scp,speech,sound \
        --asr_train_config exp/asr/config.yaml \
        --asr_model_file exp/asr/valid.loss.ave.pth --output_dir exp/decode \
        [--lm_train_config exp/lm_char/config.yaml --lm_file exp/lm_char/valid.loss.ave.pth]
Writes: <output_dir>/1best_recog/{text,token,token_int,score} (ESPnet format).
Several sets in one process: ``--set WAV_SCP KEY_FILE OUTPUT_DIR`` (repeatable)
instead of ``--data_path_and_name_and_type``, ``--key_file`` and ``--output_dir``;
each set's decoding seconds go to ``OUTPUT_DIR/seconds``.
Several models in one process: ``--jobs FILE``, one command line of this program per line
(shell-quoted; the recipes' decode_batch / decode_flush write it), run one after the other.
``--encoder_mode streaming`` decodes with the encoder in its streaming mode
(chunked attention, causal convolutions: the encoder output of chunk-by-chunk
streaming, whose equality is tested), by the same beam search and LM.

An LM (``--lm_train_config``) or ARPA n-gram (``--ngram_file``) built for
another token list than the ASR model's is refused before decoding
(:mod:`espnet_omni.tasks.lm_check`).  An utterance whose audio holds NaN
or inf, or whose file has no samples or is cut short (its header declares more
than the file holds), stops the decoding with an error naming it and its file
(exit code 1), where ESPnet would write an empty text for it, fail in its STFT,
or decode the part present.  A missing config or model file, or a truncated
checkpoint, is one line naming it (exit code 1).
"""

import sys
import time
from pathlib import Path

import espnet2.bin.asr_inference

from espnet_omni.bin.jobs import run_jobs
from espnet_omni.corpus.audio_check import BadAudioError
from espnet_omni.tasks.lm_check import (
    TokenListMismatch,
    check_lm_token_list,
    check_ngram_tokens,
)
from espnet_omni.tasks import ModelFileError, omni_asr_inference
from espnet_omni.tasks.checkpoint import check_model_files
from espnet_omni.tasks.speech2text import ENCODER_MODES, EncoderModeError


def get_parser():
    """ESPnet's asr_inference parser, its help made printable.

    ESPnet 202611's ``--ctc_window_margin`` help has a bare ``%``, which
    argparse reads as a format directive: ``--help`` raised ValueError.
    """
    parser = espnet2.bin.asr_inference.get_parser()
    for action in parser._actions:
        if action.help and "%" in action.help and "%(" not in action.help:
            action.help = action.help.replace("%", "%%")
    parser.add_argument("--encoder_mode", choices=ENCODER_MODES, default="full",
                        help="full: full-context encoder; streaming: the encoder's streaming mode "
                        "(its config's chunk size and left context; an omni_conformer encoder)")
    return parser


def split_encoder_mode(cmd: list[str]) -> tuple[list[str], str]:
    """``cmd`` without ``--encoder_mode MODE`` (ESPnet's parser does not know it), and MODE."""
    rest, mode, i = [], "full", 0
    while i < len(cmd):
        if cmd[i] == "--encoder_mode" or cmd[i].startswith("--encoder_mode="):
            if "=" in cmd[i]:
                mode, i = cmd[i].split("=", 1)[1], i + 1
            elif i + 1 < len(cmd):
                mode, i = cmd[i + 1], i + 2
            else:
                raise SystemExit("error: --encoder_mode needs a value: full or streaming")
            if mode not in ENCODER_MODES:
                raise SystemExit(f"error: --encoder_mode {mode!r}: expected one of {', '.join(ENCODER_MODES)}")
        else:
            rest.append(cmd[i])
            i += 1
    return rest, mode


def split_sets(cmd: list[str]) -> tuple[list[str], list[tuple[str, str, str]]]:
    """``cmd`` without its ``--set WAV_SCP KEY_FILE OUTPUT_DIR`` triples, and the triples."""
    rest, sets, i = [], [], 0
    while i < len(cmd):
        if cmd[i] == "--set":
            triple = cmd[i + 1:i + 4]
            if len(triple) != 3 or any(t.startswith("--") for t in triple):
                raise SystemExit(f"error: --set takes WAV_SCP KEY_FILE OUTPUT_DIR, got {triple}")
            sets.append(tuple(triple))
            i += 4
        else:
            rest.append(cmd[i])
            i += 1
    return rest, sets


def main(cmd=None):
    """Decode; ``cmd`` defaults to ``sys.argv``.

    ``--set WAV_SCP KEY_FILE OUTPUT_DIR`` (repeatable) decodes several data sets in
    this one process, one after the other, each exactly as its own
    ``--data_path_and_name_and_type WAV_SCP,speech,sound --key_file KEY_FILE
    --output_dir OUTPUT_DIR`` run would (``KEY_FILE`` ``-``: every utterance):
    the recipe starts one process per job instead of one per job and set.
    """
    cmd = list(sys.argv[1:] if cmd is None else cmd)
    if run_jobs(cmd, main):
        return
    rest, sets = split_sets(cmd)
    if sets:
        clash = [o for o in ("--data_path_and_name_and_type", "--key_file", "--output_dir") if o in rest]
        if clash:
            raise SystemExit(f"error: --set gives each set's data, keys and output dir; drop {' '.join(clash)}")
        for scp, keys, out in sets:
            one = rest + ["--data_path_and_name_and_type", f"{scp},speech,sound", "--output_dir", out]
            start = time.perf_counter()
            main(one + ([] if keys == "-" else ["--key_file", keys]))
            # this set's own decoding time (model loading included, process start-up not)
            (Path(out) / "seconds").write_text(f"{time.perf_counter() - start:.3f}\n")
        return
    args = get_parser().parse_args(cmd)
    cmd, encoder_mode = split_encoder_mode(cmd)
    try:
        check_model_files(args.asr_train_config, args.asr_model_file)
        if args.lm_train_config is not None or args.lm_file is not None:
            check_model_files(args.lm_train_config, args.lm_file)
        if args.lm_train_config is not None and args.asr_train_config is not None:
            check_lm_token_list(args.asr_train_config, args.lm_train_config)
        if args.ngram_file is not None and args.asr_train_config is not None:
            check_ngram_tokens(args.ngram_file, args.asr_train_config)
    except (TokenListMismatch, ModelFileError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    try:
        with omni_asr_inference(encoder_mode):
            espnet2.bin.asr_inference.main(cmd)
    except (BadAudioError, EncoderModeError, ModelFileError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
