#!/usr/bin/env bash
# The papers' model beside CTC (RNN-T rows): a dense RNN-T model and the RNN-T dual-mode omni
# supernet trained from it, at about the training time of the default run's CTC models (the
# dense model of run.sh stage 5 and the supernet of stage 7), then all four decoded the same way
# (greedy, no LM): the dense models full-context, the supernets in both modes, the streaming
# network chunk by chunk on one thread. Starts from the default run's outputs in the same --dir.
#
# Usage:
#   local/run_rnnt.sh                                     # everything (~35 min on 2 CPU cores)
#   local/run_rnnt.sh --stage 3                           # re-evaluate and tabulate only
#   local/run_rnnt.sh --stage 5 --distill_heads "ctc transducer"  # distillation through which head (~45 min)
#   local/run_rnnt.sh --help                              # options and stages
# Resumable: finished stages are skipped, an interrupted training resumes from its last
# checkpoint, an evaluated model is not re-evaluated with the same options.
#
# Stages:
#   1  the dense RNN-T model (rnnt_config: the dense model's Conformer with a transducer head
#      and 0.3 auxiliary CTC) -> exp/asr_<rnnt_tag>/
#   2  the RNN-T dual-mode omni supernet from it (rnnt_supernet_config) -> exp/asr_<rnnt_tag>_dual_omni/
#   3  evaluation (espnet_omni.bin.dual_mode_eval; greedy, no LM: ctc_decode_config for CTC,
#      rnnt_decode_config for RNN-T): the dense CTC and RNN-T models full-context; the CTC
#      supernet (run.sh stage 7) and the RNN-T supernet full-context and at --stream_sparsity
#      streaming, chunk by chunk on one thread (RTF) -> <exp>/rnnt_cmp/; with --use_lm true
#      (default) also each full-context network with the LM (CTC: the recipe's inference
#      config; RNN-T: rnnt_lm_decode_config) -> <exp>/rnnt_cmp/export_full/decode_lm/, and the
#      RNN-T supernet's streaming network chunk by chunk on one thread with the LM
#      (rnnt_stream_lm_decode_config: modified beam search, beam 4, shallow fusion)
#      -> <exp>/rnnt_cmp/stream_lm/
#   4  the table (WER side by side with paired bootstrap intervals, training time, RTF) -> the
#      rnnt section of --results_file
#   5  (with --distill_heads) the RNN-T supernet again per head with in-place distillation
#      (split_batch false, distill_weight, distill_head) -> exp/asr_<rnnt_tag>_dual_omni_kd_<head>/
#   6  (with --distill_heads) those evaluated like stage 3 (greedy), beside stage 2's supernet
#      -> the rnnt_distill section of --results_file
set -euo pipefail

# ------------------------------------------------------------------ options
stage=1
stop_stage=6
rnnt_config=conf/train_asr_rnnt.yaml    # the dense RNN-T model
rnnt_tag=""                             # its experiment: exp/asr_<rnnt_tag> (default: from the config name)
rnnt_args=""                            # extra asr_train arguments of the dense RNN-T model
rnnt_supernet_config=conf/train_asr_rnnt_dual_omni.yaml  # the RNN-T dual-mode omni supernet
rnnt_supernet_args=""                   # extra asr_train arguments of the RNN-T supernet
supernet_tag=dual_omni                  # the supernets' experiments: exp/asr_<tag>_<supernet_tag> (run.sh's)
stream_sparsity=0.7                     # the supernets' streaming network evaluated
ctc_decode_config=conf/decode_ctc.yaml  # full-context decoding of the CTC models (greedy, no LM)
rnnt_decode_config=conf/decode_rnnt.yaml  # full-context decoding of the RNN-T models (greedy, no LM)
ctc_lm_decode_config=""                 # with --use_lm true, the CTC models' full-context decoding with the LM
                                        # (default: the recipe's inference config, the main job's)
rnnt_lm_decode_config=conf/decode_rnnt_lm.yaml  # the RNN-T models' (ESPnet's transducer beam search + LM)
rnnt_stream_lm_decode_config=conf/decode_rnnt_stream_lm.yaml  # with --use_lm true, the RNN-T supernet's streaming
                                        # network chunk by chunk with the LM (modified beam search; "-": not decoded)
distill_heads=""                        # stages 5-6: RNN-T supernets with in-place distillation through these
                                        # heads ("ctc transducer"); empty: stages 5-6 do nothing
distill_weight=1.0                      # their omni_conf.distill_weight (split_batch false: the teacher's utterances)
# ------------------------------------------------------------------ end of options
recipe_name=local/run_rnnt.sh
last_stage=6
always_run_stages="3 4 6"  # each model's evaluation is keyed by its model and options; the tables are rewritten
stage_options() {
  case $1 in
    1) print_options rnnt_config rnnt_args ;;
    2) print_options rnnt_supernet_config rnnt_supernet_args rnnt_config ;;
    5) print_options rnnt_supernet_config rnnt_supernet_args rnnt_config distill_heads distill_weight ;;
  esac
}
done_marker() { echo "$rnnt_exp/.rnnt_stage$1.done"; }
. "$(dirname "$0")/recipe_lib.sh"
recipe_init "$@"
[ -n "$rnnt_tag" ] || rnnt_tag=$(config_tag "$rnnt_config" asr)
rnnt_exp=$exp/asr_$rnnt_tag
rnnt_sup_exp=${rnnt_exp}_$supernet_tag
ctc_sup_exp=${asr_exp}_$supernet_tag
[ -n "$ctc_lm_decode_config" ] || ctc_lm_decode_config=$inference_config
case $stream_sparsity in 0.[0-9]*) ;; *) echo "$recipe_name: --stream_sparsity '$stream_sparsity': expected a fraction in [0, 1), e.g. 0.7" >&2; exit 2 ;; esac
require_default_run
require_file "$ctc_sup_exp/$inference_model" "the default run's CTC supernet (run.sh stage 7, experiment $ctc_sup_exp)" \
  "./run.sh --dir $dir --stop_stage 7"

if run_stage 1; then
  train_asr "$rnnt_config" "$rnnt_exp" $rnnt_args
  finish_stage 1
fi

if run_stage 2; then
  require_file "$rnnt_exp/$inference_model" "the dense RNN-T model the supernet starts from" "$recipe_name --dir $dir --stage 1 --stop_stage 1"
  train_asr "$rnnt_supernet_config" "$rnnt_sup_exp" --init_param "$rnnt_exp/$inference_model" $rnnt_supernet_args
  finish_stage 2
fi

# models: "EXP DECODE_CONFIG LM_DECODE_CONFIG MODES" per line: the four models compared.
models() {
  echo "$asr_exp $ctc_decode_config $ctc_lm_decode_config full"
  echo "$rnnt_exp $rnnt_decode_config $rnnt_lm_decode_config full"
  echo "$ctc_sup_exp $ctc_decode_config $ctc_lm_decode_config full stream"
  echo "$rnnt_sup_exp $rnnt_decode_config $rnnt_lm_decode_config full stream"
}

# evaluate_model EXP DECODE_CONFIG LM_DECODE_CONFIG MODES...: EXP's (dense) full-context network
# and, with "stream" in MODES, its --stream_sparsity network chunk by chunk, greedy (keyed: a model
# evaluated with the same options is kept) -> EXP/rnnt_cmp/; with the LM (--use_lm true, and
# LM_DECODE_CONFIG not "-") the full-context network also decoded as the product decodes, make-style.
evaluate_model() {
  local d=$1 conf=$2 lm_conf=$3; shift 3
  local modes="$*" t=$d/rnnt_cmp eval_key
  mkdir -p "$t"
  require_file "$d/$inference_model" "the model $d" "$recipe_name --dir $dir (stages 1-2, 5), ./run.sh --dir $dir (the CTC models)"
  eval_key=$(printf '%s\n' "model=$(cksum < "$d/$inference_model")" "decode_config=$conf $(cksum < "$conf")" "modes=$modes" \
    "test_sets=$test_sets" "calibration=${calibration_opts[*]}" "stream_sparsity=$stream_sparsity" "export_format=$export_format")
  if ! evaluated_already "$t" "$eval_key" "$d"; then
    log "$d: $modes (log: $t/eval.log)"
    $python -m espnet_omni.bin.dual_mode_eval --asr_train_config "$d/config.yaml" \
      --asr_model_file "$d/$inference_model" --inference_config "$conf" --decode_name decode_greedy \
      --format "$export_format" --out_dir "$t" --modes $modes --stream_sparsity "$stream_sparsity" --stream_search false \
      $(for x in $test_sets; do printf -- '--data_dir %s ' "$dump/$x"; done) "${calibration_opts[@]}" \
      > "$t/eval.log" 2>&1 || { log "evaluation failed: see $t/eval.log"; exit 1; }
    grep -E "sparsity|RTF" "$t/eval.log" | sed 's/^/    /' >&2 || true
    score_decode "$t/export_full" decode_greedy "$t/export_full/config.yaml" none
    [[ " $modes " != *" stream "* ]] || score_decode "$t" stream "$d/config.yaml" none
    mark_evaluated "$t" "$eval_key"
  fi
  if $use_lm && [ "$lm_conf" != - ]; then
    require_file "$lm_conf" "the LM decoding config of $d" "--ctc_lm_decode_config / --rnnt_lm_decode_config FILE"
    require_file "$t/export_full/model.pth" "the exported full-context network of $d" "$recipe_name --dir $dir --stage 3"
    # queued (stage 3's decode_batch): scored by score_lm_decode after decode_flush
    (inference_config=$lm_conf; decode_model "$t/export_full/config.yaml" "$t/export_full/model.pth" "$t/export_full/decode_lm")
  fi
}

# score_lm_decode EXP LM_DECODE_CONFIG: the WER of evaluate_model's decode with the LM.
score_lm_decode() {
  if $use_lm && [ "$2" != - ]; then
    score_decode "$1/rnnt_cmp/export_full" decode_lm "$1/rnnt_cmp/export_full/config.yaml" none
  fi
}

# stream_lm_model EXP: EXP's --stream_sparsity network (evaluate_model's subnet_stream.yaml, its
# BatchNorm statistics re-estimated in streaming mode as there) chunk by chunk on one thread with
# the LM (rnnt_stream_lm_decode_config: modified beam search + shallow fusion,
# espnet_omni.bin.asr_inference_streaming), keyed like evaluate_model -> EXP/rnnt_cmp/stream_lm/
stream_lm_model() {
  local d=$1 t=$1/rnnt_cmp o=$1/rnnt_cmp/stream_lm conf=$rnnt_stream_lm_decode_config key x
  require_file "$conf" "the streaming LM decoding config of $d" "--rnnt_stream_lm_decode_config FILE (or -)"
  require_file "$t/subnet_stream.yaml" "the streaming network of $d" "$recipe_name --dir $dir --stage 3"
  set_lm_opts
  key=$(printf '%s\n' "model=$(cksum < "$d/$inference_model")" "subnet=$(cksum < "$t/subnet_stream.yaml")" \
    "calibration=${calibration_opts[*]}" "decode_config=$conf $(cksum < "$conf")" \
    "lm=${lm_opts[*]} $(cksum < "$lm_exp/$lm_inference_model")" "test_sets=$test_sets")
  mkdir -p "$o"
  evaluated_already "$o" "$key" "$d (streaming with the LM)" && return 0
  log "$d: the streaming network chunk by chunk with the LM ($conf) -> $o"
  # its dense copy (pruned weights zero) streams in the supernet's encoder, as run.sh stage 10's
  # (--format dense overrides export_model's --export_format)
  export_model "$d" "$t/subnet_stream.yaml" "$o/dense" --format dense --calibration_mode streaming \
    > "$o/export.log" 2>&1 || { log "export failed: see $o/export.log"; exit 1; }
  $python -m espnet_omni.bin.asr_inference_streaming --jobs <(for x in $test_sets; do
    printf '%q ' --asr_train_config "$d/config.yaml" --asr_model_file "$o/dense/model.pth" --data_dir "$dump/$x" \
      --output_dir "$o/$x" --decode_config "$conf" "${lm_opts[@]}" --num_threads 1; echo; done) > "$o/decode.log" 2>&1 \
    || { log "streaming decoding with the LM failed: see $o/decode.log"; exit 1; }
  score_decode "$t" stream_lm "$d/config.yaml" none
  mark_evaluated "$o" "$key"
}
stream_lm=false  # the RNN-T supernet's streaming network is decoded with the LM too (stages 3-4)
if $use_lm && [ "$rnnt_stream_lm_decode_config" != - ]; then stream_lm=true; fi

if run_stage 3; then
  decode_batch  # the decodes with the LM of every model queued, then run by one process per job
  while read -r d conf lm_conf modes; do
    evaluate_model "$d" "$conf" "$lm_conf" $modes
  done < <(models)
  decode_flush
  while read -r d conf lm_conf modes; do score_lm_decode "$d" "$lm_conf"; done < <(models)
  if $stream_lm; then stream_lm_model "$rnnt_sup_exp"; fi
  finish_stage 3
fi

if run_stage 4; then
  $python local/rnnt_table.py --ctc "$asr_exp" "$ctc_sup_exp" --rnnt "$rnnt_exp" "$rnnt_sup_exp" \
    --sets $test_sets --dump "$dump" --stream_sparsity "$stream_sparsity" \
    --decode_configs "$ctc_decode_config" "$rnnt_decode_config" \
    $($use_lm && echo --lm_decode_configs "$ctc_lm_decode_config" "$rnnt_lm_decode_config") \
    $($stream_lm && echo --stream_lm_decode_config "$rnnt_stream_lm_decode_config") \
    --results_file "$results_file" --command "$command_line"
  finish_stage 4
fi

# the distillation supernets of stage 5 (one per --distill_heads)
kd_exps() { local h; for h in $distill_heads; do echo "${rnnt_sup_exp}_kd_$h"; done; }

if run_stage 5; then
  if [ -z "$distill_heads" ]; then
    log "no --distill_heads: nothing to train"
  else
    for h in $distill_heads; do
      case $h in ctc|transducer) ;; *) log "error: --distill_heads '$distill_heads': expected ctc and/or transducer, got '$h'"; exit 2 ;; esac
    done
    require_file "$rnnt_exp/$inference_model" "the dense RNN-T model the supernets start from" "$recipe_name --dir $dir --stage 1 --stop_stage 1"
    for h in $distill_heads; do
      train_asr "$rnnt_supernet_config" "${rnnt_sup_exp}_kd_$h" --init_param "$rnnt_exp/$inference_model" $rnnt_supernet_args \
        --omni_conf split_batch=false --omni_conf distill_weight="$distill_weight" --omni_conf distill_head="$h"
    done
    finish_stage 5
  fi
fi

if run_stage 6; then
  if [ -z "$distill_heads" ]; then
    log "no --distill_heads: nothing to evaluate"
  else
    evaluate_model "$rnnt_sup_exp" "$rnnt_decode_config" - full stream
    for e in $(kd_exps); do evaluate_model "$e" "$rnnt_decode_config" - full stream; done
    $python local/rnnt_table.py --distill "$rnnt_sup_exp" $(kd_exps) --sets $test_sets --dump "$dump" \
      --stream_sparsity "$stream_sparsity" --decode_configs "$ctc_decode_config" "$rnnt_decode_config" \
      --results_file "$results_file" --section rnnt_distill --command "$command_line"
    finish_stage 6
  fi
fi
current_stage=""
log "finished stages $stage..$stop_stage"
