#!/usr/bin/env python3
"""ASR training with OmniASRTask (ESPnet's asr_train + our encoders/trainer).

Usage:
    python -m espnet_omni.bin.asr_train --print_config > conf/train_asr.yaml
    python -m espnet_omni.bin.asr_train --config conf/train_asr.yaml ...
Writes: <output_dir>/config.yaml, checkpoints, *.pth (as ESPnet does).
"""

from espnet_omni.tasks import OmniASRTask


def get_parser():
    """The full ESPnet ASR parser, with our choices and ``--omni_*`` flags."""
    return OmniASRTask.get_parser()


def main(cmd=None):
    """Train (or ``--collect_stats true``); ``cmd`` defaults to ``sys.argv``."""
    OmniASRTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
