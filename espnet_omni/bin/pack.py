#!/usr/bin/env python3
"""Pack a trained model into an archive: ESPnet's pack, unchanged.

Packing is task-agnostic (it zips the config, the model file and options
and writes meta.yaml); the archive loads with espnet_omni.bin.asr_inference
(``--model_tag <archive>.zip``, or unpack and pass the files).

Usage:
    python -m espnet_omni.bin.pack asr --outpath exp/asr_pack.zip \
        --asr_train_config exp/asr/config.yaml \
        --asr_model_file exp/asr/valid.loss.ave.pth \
        --option exp/asr_stats/train/feats_stats.npz
Writes: the archive at --outpath (.zip, .tar, .tgz, .tar.gz, ...).
"""

import espnet2.bin.pack

import espnet_omni.tasks  # noqa: F401  (same import contract as every bin entry)


def get_parser():
    """ESPnet's pack parser (subcommands asr, ssl, ...)."""
    return espnet2.bin.pack.get_parser()


def main(cmd=None):
    """Pack; ``cmd`` defaults to ``sys.argv``."""
    espnet2.bin.pack.main(cmd)


if __name__ == "__main__":
    main()
