#!/usr/bin/env bash
# LM weight, insertion penalty and beam of the shallow-fusion decoding, tuned on dev
# (RESULTS.md, section `lm_tuning`), for one trained model and the LM of run.sh stage 6.
#
# Usage:
#   local/run_lm_tuning.sh --asr_tag abl_voices --asr_config conf/ablation/baseline.yaml
#   local/run_lm_tuning.sh --asr_tag abl_voices --asr_config conf/ablation/baseline.yaml \
#       --grid "1.0,0,10 1.3,0,10" --table_only true
#   local/run_lm_tuning.sh --dir base --asr_tag abl_hybrid --asr_config conf/ablation/hybrid.yaml \
#       --inference_config conf/decode_hybrid_lm.yaml --baseline decode_hybrid \
#       --grid "0.3,0,10,0.3 0.5,0,10,0.5" --section lm_tuning_hybrid   # joint CTC/attention
#
# Each grid point "WEIGHT,PENALTY,BEAM[,CTC_WEIGHT]" is one decoding of dev (local/score_dense.sh
# with --inference_config, --inference_tag lm_w<W>_p<P>[_b<B>][_c<C>]); the first row
# of the table is the model's decoding without LM (--baseline: its decoding config's name,
# decoded by local/score_dense.sh). Writes exp/asr_<tag>/decode_lm_*/ and the --section (default
# `lm_tuning`) of --results_file (default: RESULTS.md of this checkout).
set -euo pipefail
cd "$(dirname "$0")/.."

dir=.
asr_tag=abl_voices
asr_config=conf/ablation/baseline.yaml
grid="0.3,0,10 0.5,0,10 0.7,0,10 1.0,0,10 1.3,0,10 1.6,0,10 2.0,0,10 1.3,0.5,10 1.6,1.0,10"
table_only=false
results_file=RESULTS.md
inference_config=conf/decode_ctc_lm.yaml
baseline=decode_ctc
section=lm_tuning
note=""
while [ $# -gt 0 ]; do
  case $1 in
    --dir|--asr_tag|--asr_config|--grid|--table_only|--results_file|--note|--inference_config|--baseline|--section) v=${1#--}; printf -v "$v" '%s' "$2"; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "local/run_lm_tuning.sh: unknown option $1 (valid: --dir --asr_tag --asr_config --grid --table_only --results_file --note --inference_config --baseline --section)" >&2; exit 2 ;;
  esac
done

tag_of() {  # WEIGHT PENALTY BEAM [CTC_WEIGHT] -> inference tag
  local t="lm_w$1_p$2"; [ "$3" = 10 ] || t="${t}_b$3"; [ -z "$4" ] || t="${t}_c$4"; echo "$t"
}
rows=(--row "$baseline, no LM=$dir/exp/asr_$asr_tag/decode_${baseline}_valid.loss.ave")
for point in $grid; do
  IFS=, read -r w p b c <<< "$point"
  [ -n "$b" ] || { echo "local/run_lm_tuning.sh: grid point '$point': expected WEIGHT,PENALTY,BEAM[,CTC_WEIGHT]" >&2; exit 2; }
  t=$(tag_of "$w" "$p" "$b" "$c")
  if ! $table_only; then
    OMP_NUM_THREADS=1 local/score_dense.sh --dir "$dir" --asr_tag "$asr_tag" --asr_config "$asr_config" \
      --use_lm true --test_sets dev --results_file none --inference_tag "$t" --inference_config "$inference_config" \
      --inference_args "--lm_weight $w --penalty $p --beam_size $b${c:+ --ctc_weight $c}"
  fi
  rows+=(--row "LM weight $w, penalty $p, beam $b${c:+, CTC weight $c}=$dir/exp/asr_$asr_tag/decode_$t")
done
.venv/bin/python local/ablation.py "${rows[@]}" --dump "$dir/dump/raw" --sets dev --rtf_set dev \
  --results_file "$results_file" --section "$section" \
  --title "Shallow fusion of the character LM, tuned on dev (model exp/asr_$asr_tag)" \
  --command "local/run_lm_tuning.sh --dir $dir --asr_tag $asr_tag --asr_config $asr_config --inference_config $inference_config --baseline $baseline --section $section --grid \"$grid\"" --note "$note"
