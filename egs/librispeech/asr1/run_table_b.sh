#!/usr/bin/env bash
# LibriSpeech Table B (dual mode, wav2vec 2.0): local/run_table_b.sh with the paper-scale
# streaming, dual-mode (both modes on every batch, the papers' setting: --dual_tag dual) and
# pretraining configs, from the outputs of egs/librispeech/asr1/run.sh (GPU).
#
# Usage:
#   egs/librispeech/asr1/run_table_b.sh                       # all five rows
#   egs/librispeech/asr1/run_table_b.sh --table_b_rows "1 2 3"
# Any local/run_table_b.sh option may follow.
set -euo pipefail
. "$(dirname "$0")/common.sh"
exec local/run_table_b.sh "${ls_common[@]}" \
  --stream_config "$ls_conf/train_asr_stream.yaml" --dual_config "$ls_conf/train_asr_dual.yaml" --dual_tag dual \
  --ssl_config "$ls_conf/pretrain_w2v.yaml" --ssl_dual_config "$ls_conf/pretrain_w2v_dual.yaml" \
  --ssl_untranscribed 0 "$@"   # the extra audio is synthesized for the embedded corpus only
