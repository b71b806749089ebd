#!/usr/bin/env python3
"""ASR decoding: ESPnet's asr_inference, building the model with OmniASRTask.

Usage:
    python -m espnet_omni.bin.asr_inference --ngpu 0 --batch_size 1 \
        --data_path_and_name_and_type data/test/wav.scp,speech,sound \
        --asr_train_config exp/asr/config.yaml \
        --asr_model_file exp/asr/valid.loss.ave.pth --output_dir exp/decode \
        [--lm_train_config exp/lm_char/config.yaml --lm_file exp/lm_char/valid.loss.ave.pth]
Writes: <output_dir>/1best_recog/{text,token,token_int,score} (ESPnet format).

An LM (``--lm_train_config``) or ARPA n-gram (``--ngram_file``) built for
another token list than the ASR model's is refused before decoding
(:mod:`espnet_omni.inference.lm_check`).  An utterance whose audio holds NaN
or inf stops the decoding with an error naming it (exit code 1), where ESPnet
would write an empty text for it.
"""

import sys

import espnet2.bin.asr_inference

from espnet_omni.corpus.audio_check import BadAudioError
from espnet_omni.inference.lm_check import (
    TokenListMismatch,
    check_lm_token_list,
    check_ngram_tokens,
)
from espnet_omni.tasks import omni_asr_inference


def get_parser():
    """ESPnet's asr_inference parser, its help made printable.

    ESPnet 202611's ``--ctc_window_margin`` help has a bare ``%``, which
    argparse reads as a format directive: ``--help`` raised ValueError.
    """
    parser = espnet2.bin.asr_inference.get_parser()
    for action in parser._actions:
        if action.help and "%" in action.help and "%(" not in action.help:
            action.help = action.help.replace("%", "%%")
    return parser


def main(cmd=None):
    """Decode; ``cmd`` defaults to ``sys.argv``."""
    args = get_parser().parse_args(cmd)
    try:
        if args.lm_train_config is not None and args.asr_train_config is not None:
            check_lm_token_list(args.asr_train_config, args.lm_train_config)
        if args.ngram_file is not None and args.asr_train_config is not None:
            check_ngram_tokens(args.ngram_file, args.asr_train_config)
    except TokenListMismatch as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    try:
        with omni_asr_inference():
            espnet2.bin.asr_inference.main(cmd)
    except BadAudioError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
