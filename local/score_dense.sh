#!/usr/bin/env bash
# The dense model of run.sh stage 5 alone, decoded and scored on every test set: its
# section of --results_file (the accuracy ablation and the LM tuning use it; so does
# Table A's stage 1). Takes every run.sh option that names the model and its decoding.
#
# Usage:
#   local/score_dense.sh                                   # the default run's dense model
#   local/score_dense.sh --asr_tag abl_base --asr_config conf/ablation/baseline.yaml --dir base
#   local/score_dense.sh --use_lm false                    # CTC greedy
#
# Stages:
#   1  decoding of every test set (with the LM when --use_lm true), make-style: a set
#      already decoded with the same options by the same model is kept
#      -> exp/asr_<tag>/decode_<inference>/<set>/text
#   2  scoring: WER/CER per test set and per voice family -> exp/asr_<tag>/decode_<inference>/
#      scores.json and the section of --results_file for this experiment
set -euo pipefail

# ------------------------------------------------------------------ options
stage=1
stop_stage=2
# ------------------------------------------------------------------ end of options
recipe_name=local/score_dense.sh
last_stage=2
always_run_stages="1 2"
stage_options() { :; }
done_marker() { echo "$asr_exp/decode_$inference_tag/.score_dense_stage$1.done"; }
. "$(dirname "$0")/recipe_lib.sh"
recipe_init "$@"
require_file "$asr_exp/$inference_model" "the dense model (run.sh stage 5, experiment $asr_exp)" \
  "./run.sh --dir $dir --stop_stage 5 --asr_config $asr_config${asr_tag:+ --asr_tag $asr_tag}"

if run_stage 1; then
  decode_model "$asr_exp/config.yaml" "$asr_exp/$inference_model" "$asr_exp/decode_$inference_tag"
  finish_stage 1
fi
if run_stage 2; then
  score_decode "$asr_exp" "decode_$inference_tag" "$asr_config"
  finish_stage 2
fi
