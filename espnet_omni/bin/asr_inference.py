#!/usr/bin/env python3
"""ASR decoding: ESPnet's asr_inference, building the model with OmniASRTask.

Usage:
    python -m espnet_omni.bin.asr_inference --ngpu 0 --batch_size 1 \
        --data_path_and_name_and_type data/test/wav.scp,speech,sound \
        --asr_train_config exp/asr/config.yaml \
        --asr_model_file exp/asr/valid.loss.ave.pth --output_dir exp/decode
Writes: <output_dir>/1best_recog/{text,token,token_int,score} (ESPnet format).
"""

import espnet2.bin.asr_inference

from espnet_omni.tasks import omni_asr_inference


def get_parser():
    """ESPnet's asr_inference parser (unchanged)."""
    return espnet2.bin.asr_inference.get_parser()


def main(cmd=None):
    """Decode; ``cmd`` defaults to ``sys.argv``."""
    with omni_asr_inference():
        espnet2.bin.asr_inference.main(cmd)


if __name__ == "__main__":
    main()
