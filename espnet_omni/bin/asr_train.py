#!/usr/bin/env python3
"""ASR training with OmniASRTask (ESPnet's asr_train + our encoders/trainer).

Usage:
    python -m espnet_omni.bin.asr_train --print_config > conf/train_asr.yaml
    python -m espnet_omni.bin.asr_train --config conf/train_asr.yaml ...
Writes: <output_dir>/config.yaml, checkpoints, *.pth (as ESPnet does).
"""

import sys

from espnet_omni.corpus.noise_rir import NoiseRirError
from espnet_omni.tasks import OmniASRTask


def get_parser():
    """The full ESPnet ASR parser, with our choices and ``--omni_*`` flags."""
    return OmniASRTask.get_parser()


def main(cmd=None):
    """Train (or ``--collect_stats true``); ``cmd`` defaults to ``sys.argv``."""
    try:
        OmniASRTask.main(cmd=cmd)
    except NoiseRirError as e:  # a bad --noise_scp/--rir_scp: the list, line and file
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
