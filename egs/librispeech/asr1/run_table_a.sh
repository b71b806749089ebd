#!/usr/bin/env bash
# LibriSpeech Table A (omni-sparsity): local/run_table_a.sh with the paper-scale supernet and
# individually pruned models, from the outputs of egs/librispeech/asr1/run.sh (GPU).
#
# Usage:
#   egs/librispeech/asr1/run_table_a.sh                       # every stage
#   egs/librispeech/asr1/run_table_a.sh --prune_targets "0.5 0.8"
# Any local/run_table_a.sh option may follow.
set -euo pipefail
. "$(dirname "$0")/common.sh"
exec local/run_table_a.sh "${ls_common[@]}" \
  --omni_config "$ls_conf/train_asr_omni.yaml" --prune_config "$ls_conf/train_asr_prune.yaml" \
  --prune_ramp_steps 20000 "$@"
