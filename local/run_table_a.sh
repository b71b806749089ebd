#!/usr/bin/env bash
# Table A (omni-sparsity, claims C1 and C2): individually pruned models against the
# sub-networks of one omni supernet at the same sizes. Starts from the default run's
# outputs (./run.sh stages 1-6: data, dense model, LM) in the same --dir.
#
# Usage:
#   local/run_table_a.sh                                  # every stage (3 sizes; ~45 min on 2 CPU cores)
#   local/run_table_a.sh --prune_targets "0.5 0.6 0.7 0.8 0.9"  # 5 sizes
#   local/run_table_a.sh --stage 7 --stop_stage 7 --table_a_also "v2=exp/asr_ctc_omni.v2"
#   local/run_table_a.sh --help                           # options and stages
# Resumable: finished stages are skipped, an interrupted training resumes from its last
# checkpoint, a decoding keeps the sets already decoded.
#
# Stages:
#   1  the dense model (run.sh stage 5) decoded and scored on every test set
#      -> exp/asr_<tag>/decode_<inference>/, its section of --results_file
#   2  supernet training from the dense model (omni_config) -> exp/asr_<tag>_<omni_tag>/
#   3  individually pruned models, one per --prune_targets sparsity -> exp/asr_<tag>_prune<s>/
#   4  export of each individual model -> exp/asr_<tag>_prune<s>/export/
#   5  search of the supernet under each individual model's size, and export of the
#      sub-networks found -> exp/asr_<tag>_<omni_tag>/search/, .../export_<s>/
#   6  decoding and scoring of every export
#   7  Table A and its Pareto plot -> the table_a section of --results_file, exp/table_a.png
set -euo pipefail

# ------------------------------------------------------------------ options
stage=1
stop_stage=7
omni_config=conf/train_asr_omni.yaml    # the supernet
omni_tag=omni                           # its experiment: exp/asr_<asr_tag>_<omni_tag>
omni_args=""                            # extra asr_train arguments of the supernet
prune_config=conf/train_asr_prune.yaml  # the individually pruned models (gradual magnitude pruning)
prune_targets="0.5 0.7 0.9"             # one individual model per sparsity; the search budgets are their sizes
                                        # (the papers' 5 sizes: "0.5 0.6 0.7 0.8 0.9", ~13 min more on 2 cores)
prune_ramp_steps=400                    # optimizer steps of the cubic sparsity ramp of each individual model
prune_args=""                           # extra asr_train arguments of each individual model
search_args="--population 12 --generations 4"
                                        # espnet_omni.bin.search arguments: <= 48 dev decodes per
                                        # budget (a shared cache), each on the whole dev set
table_a_also=""                         # other supernet runs shown beside it in Table A (stage 7),
                                        # "LABEL=EXP_DIR ..." (each searched, exported, decoded)
# ------------------------------------------------------------------ end of options
recipe_name=local/run_table_a.sh
last_stage=7
always_run_stages="1"
stage_options() {
  case $1 in
    2) print_options omni_config omni_args asr_config ;;
    3) print_options prune_config prune_targets prune_ramp_steps prune_args ;;
    5) print_options prune_targets search_args bn_calib_utts export_format ;;
  esac
}
done_marker() {
  case $1 in
    1) echo "$asr_exp/decode_$inference_tag/.table_a_stage1.done" ;;
    *) echo "$omni_exp/.table_a_stage$1.done" ;;
  esac
}
. "$(dirname "$0")/recipe_lib.sh"
recipe_init "$@"
omni_exp=${asr_exp}_$omni_tag
prune_exp() { echo "${asr_exp}_prune$1"; }
require_default_run

if run_stage 1; then
  decode_model "$asr_exp/config.yaml" "$asr_exp/$inference_model" "$asr_exp/decode_$inference_tag"
  score_decode "$asr_exp" "decode_$inference_tag" "$asr_config"
  finish_stage 1
fi

if run_stage 2; then
  train_asr "$omni_config" "$omni_exp" --init_param "$asr_exp/$inference_model" $omni_args
  finish_stage 2
fi

if run_stage 3; then
  for s in $prune_targets; do
    train_asr "$prune_config" "$(prune_exp "$s")" --init_param "$asr_exp/$inference_model" \
      --omni_conf "{sampler: {rule: fixed, fixed: [$s]}, schedule: {final_sparsity: $s, end_step: $prune_ramp_steps}, valid_sparsities: [$s]}" \
      $prune_args
  done
  finish_stage 3
fi

if run_stage 4; then
  for s in $prune_targets; do
    d=$(prune_exp "$s")
    $python -m espnet_omni.bin.subnet_yaml --asr_train_config "$d/config.yaml" --sparsity "$s" --out "$d/subnet.yaml"
  done
  # one process exports them all (ESPnet's start-up paid once)
  $python -m espnet_omni.bin.export --jobs <(for s in $prune_targets; do
    d=$(prune_exp "$s"); export_args "$d" "$d/subnet.yaml" "$d/export"; done)
  finish_stage 4
fi

if run_stage 5; then
  # The budget of each search is the individual model's encoder size (subnet.json of stage 4),
  # all read by one Python start-up; budget_list[i] belongs to the i-th prune target.
  for s in $prune_targets; do
    require_file "$(prune_exp "$s")/subnet.json" "the individual model of sparsity $s" "$recipe_name --dir $dir --stage 3 --stop_stage 4"
  done
  budgets=$($python -c 'import json, sys; print(" ".join(str(json.load(open(f))["encoder_nonzero_params"]) for f in sys.argv[1:]))' \
    $(for s in $prune_targets; do echo "$(prune_exp "$s")/subnet.json"; done))
  read -r -a budget_list <<< "$budgets"
  log "search budgets (non-zero encoder parameters of the individual models): $budgets"
  $python -m espnet_omni.bin.search --asr_train_config "$omni_exp/config.yaml" \
    --asr_model_file "$omni_exp/$inference_model" --data_dir "$dump/$valid_set" \
    --budgets $budgets --budget_unit params --out_dir "$omni_exp/search" "${calibration_opts[@]}" $search_args
  $python -m espnet_omni.bin.export --jobs <(i=0; for s in $prune_targets; do
    b=${budget_list[$i]}; i=$((i + 1))
    export_args "$omni_exp" "$omni_exp/search/subnet_$b.yaml" "$omni_exp/export_$s"; done)
  finish_stage 5
fi

if run_stage 6; then
  decode_batch  # every model's decodes queued, then run by one process per job
  for s in $prune_targets; do
    for d in "$(prune_exp "$s")/export" "$omni_exp/export_$s"; do
      decode_model "$d/config.yaml" "$d/model.pth" "$d/decode_$inference_tag"
    done
  done
  decode_flush
  for s in $prune_targets; do
    for d in "$(prune_exp "$s")/export" "$omni_exp/export_$s"; do
      score_decode "$d" "decode_$inference_tag" "$d/config.yaml" none  # Table A (stage 7) sums them up
    done
  done
  finish_stage 6
fi

if run_stage 7; then
  $python local/table_a.py --dense "$asr_exp" --omni "$omni_exp" \
    --prune $(for s in $prune_targets; do printf '%s ' "$(prune_exp "$s")"; done) \
    --targets $prune_targets --decode "decode_$inference_tag" --sets $test_sets \
    --results_file "$results_file" --plot "$exp/table_a.png" --command "$command_line" --dump "$dump" \
    --also $table_a_also
  finish_stage 7
fi
current_stage=""
log "finished stages $stage..$stop_stage"
