#!/usr/bin/env bash
# LibriSpeech main job: the top-level run.sh (data, dense model, LM, the dual-mode omni
# supernet, search, export, both modes decoded, the Pareto table) with LibriSpeech data and
# paper-scale models (GPU). Set LIBRISPEECH in db.sh (or the environment) first.
#
# Usage:
#   egs/librispeech/asr1/run.sh                          # train-clean-100, every stage
#   egs/librispeech/asr1/run.sh --ngpu 0 --stop_stage 4  # data + stats only (CPU)
#   egs/librispeech/asr1/run.sh --train_set train_960 \
#       --librispeech_subsets "train-clean-100 train-clean-360 train-other-500 dev-clean test-clean test-other"
#   egs/librispeech/asr1/run_table_a.sh                  # Table A from this run's outputs
#   egs/librispeech/asr1/run_table_b.sh                  # Table B (wav2vec 2.0 + dual mode)
#
# Writes: egs/librispeech/asr1/{data,dump,exp,RESULTS.md}. Any run.sh option may follow.
set -euo pipefail
. "$(dirname "$0")/common.sh"
exec ./run.sh "${ls_common[@]}" \
  --librispeech_subsets "train-clean-100 dev-clean test-clean test-other" --max_sec 35 \
  --supernet_config "$ls_conf/train_asr_dual_omni.yaml" \
  --pareto_sets "test_clean test_other" --latency_set test_clean "$@"
