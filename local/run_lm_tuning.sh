#!/usr/bin/env bash
# LM weight, insertion penalty and beam of the shallow-fusion decoding, tuned on dev
# (RESULTS.md, section `lm_tuning`), for one trained model and the LM of run.sh stage 6.
#
# Usage:
#   local/run_lm_tuning.sh --asr_tag abl_voices --asr_config conf/ablation/baseline.yaml
#   local/run_lm_tuning.sh --asr_tag abl_voices --asr_config conf/ablation/baseline.yaml \
#       --grid "1.0,0,10 1.3,0,10" --table_only true
#
# Each grid point "WEIGHT,PENALTY,BEAM" is one decoding of dev (run.sh stages 7-8,
# --inference_tag lm_w<W>_p<P>[_b<B>]); the point 0.5,0,10 is conf/decode_ctc_lm.yaml's
# own setting. Writes exp/asr_<tag>/decode_lm_*/ and the `lm_tuning` section of
# --results_file (default: RESULTS.md of this checkout).
set -euo pipefail
cd "$(dirname "$0")/.."

dir=.
asr_tag=abl_voices
asr_config=conf/ablation/baseline.yaml
grid="0.3,0,10 0.5,0,10 0.7,0,10 1.0,0,10 1.3,0,10 1.6,0,10 2.0,0,10 1.3,0.5,10 1.6,1.0,10"
table_only=false
results_file=RESULTS.md
note=""
while [ $# -gt 0 ]; do
  case $1 in
    --dir|--asr_tag|--asr_config|--grid|--table_only|--results_file|--note) v=${1#--}; printf -v "$v" '%s' "$2"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "local/run_lm_tuning.sh: unknown option $1 (valid: --dir --asr_tag --asr_config --grid --table_only --results_file --note)" >&2; exit 2 ;;
  esac
done

tag_of() {  # WEIGHT PENALTY BEAM -> inference tag
  local t="lm_w$1_p$2"; [ "$3" = 10 ] || t="${t}_b$3"; echo "$t"
}
rows=(--row "CTC greedy, no LM=$dir/exp/asr_$asr_tag/decode_decode_ctc_valid.loss.ave")
for point in $grid; do
  IFS=, read -r w p b <<< "$point"
  [ -n "$b" ] || { echo "local/run_lm_tuning.sh: grid point '$point': expected WEIGHT,PENALTY,BEAM" >&2; exit 2; }
  t=$(tag_of "$w" "$p" "$b")
  if ! $table_only; then
    OMP_NUM_THREADS=1 ./run.sh --dir "$dir" --stage 7 --stop_stage 8 --asr_tag "$asr_tag" --asr_config "$asr_config" \
      --use_lm true --test_sets dev --results_file none --inference_tag "$t" \
      --inference_args "--lm_weight $w --penalty $p --beam_size $b"
  fi
  rows+=(--row "LM weight $w, penalty $p, beam $b=$dir/exp/asr_$asr_tag/decode_$t")
done
.venv/bin/python local/ablation.py "${rows[@]}" --dump "$dir/dump/raw" --sets dev --rtf_set dev \
  --results_file "$results_file" --section lm_tuning \
  --title "Shallow fusion of the character LM, tuned on dev (model exp/asr_$asr_tag)" \
  --command "local/run_lm_tuning.sh --asr_tag $asr_tag --asr_config $asr_config --grid \"$grid\"" --note "$note"
