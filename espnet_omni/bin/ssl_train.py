#!/usr/bin/env python3
"""SSL pretraining with OmniSSLTask (ESPnet's ssl_train + our classes/trainer).

Usage:
    python -m espnet_omni.bin.ssl_train --print_config > conf/pretrain.yaml
    python -m espnet_omni.bin.ssl_train --config conf/pretrain.yaml ...
Writes: <output_dir>/config.yaml, checkpoints, *.pth (as ESPnet does).
"""

from espnet_omni.tasks import OmniSSLTask


def get_parser():
    """The full ESPnet SSL parser, with our choices and ``--omni_*`` flags."""
    return OmniSSLTask.get_parser()


def main(cmd=None):
    """Pretrain (or ``--collect_stats true``); ``cmd`` defaults to ``sys.argv``."""
    OmniSSLTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
