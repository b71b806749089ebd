#!/usr/bin/env bash
# LibriSpeech recipe: the top-level run.sh with LibriSpeech data and paper-scale
# models (GPU). Set LIBRISPEECH in db.sh (or the environment) first.
#
# Usage:
#   egs/librispeech/asr1/run.sh                          # train-clean-100, stages 1-8
#   egs/librispeech/asr1/run.sh --stage 9 --stop_stage 14   # Table A on LibriSpeech
#   egs/librispeech/asr1/run.sh --stage 15 --stop_stage 18  # Table B (wav2vec 2.0 + dual mode)
#   egs/librispeech/asr1/run.sh --ngpu 0 --stop_stage 4  # data + stats only (CPU)
#
# Writes: egs/librispeech/asr1/{data,dump,exp,RESULTS.md}. Any run.sh option may follow.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../../.."
exec ./run.sh --dir "$here" --corpus librispeech \
  --librispeech_subsets "train-clean-100 dev-clean test-clean test-other" \
  --train_set train_clean_100 --valid_set dev_clean --test_sets "dev_clean test_clean test_other" \
  --token_type bpe --nbpe 300 --max_sec 35 --ngpu 1 \
  --asr_config egs/librispeech/asr1/conf/train_asr_ctc.yaml \
  --omni_config egs/librispeech/asr1/conf/train_asr_omni.yaml \
  --prune_config egs/librispeech/asr1/conf/train_asr_prune.yaml \
  --prune_ramp_steps 20000 \
  --stream_config egs/librispeech/asr1/conf/train_asr_stream.yaml \
  --dual_config egs/librispeech/asr1/conf/train_asr_dual.yaml \
  --ssl_config egs/librispeech/asr1/conf/pretrain_w2v.yaml \
  --ssl_dual_config egs/librispeech/asr1/conf/pretrain_w2v_dual.yaml "$@"
