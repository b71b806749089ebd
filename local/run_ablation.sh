#!/usr/bin/env bash
# The accuracy ablation (RESULTS.md, section `ablation`): each lever alone, then combined,
# every row trained and decoded by run.sh, greedy and with the language model.
#
# Usage:
#   local/run_ablation.sh                                  # every row (many CPU hours)
#   local/run_ablation.sh --rows "base voices combined"    # some rows; the table lists them
#   local/run_ablation.sh --dir ../abl --nj 2              # where data/, dump/, exp/ go
#   local/run_ablation.sh --table_only true                # only rewrite the table from what exists
#   local/run_ablation.sh --table_only true --note "..."     # with a provenance note under it
#
# Rows (experiment exp/asr_abl_<row>; run.sh options):
#   base      the recipe before this work: plan v1's train voices (DIR/base, --train_voices base),
#             conf/ablation/baseline.yaml (the dense config before this work), 12 epochs
#   voices    + speaker diversity (--train_voices all): pseudo-speakers, 60 more espeak
#             variants, wider train ranges; every row below builds on it
#   specaug   voices + SpecAugment retuned (conf/ablation/specaug.yaml)
#   noise_rir voices + noise and reverberation (conf/ablation/noise_rir.yaml, --noise_rir true)
#   sp        voices + speed perturbation 0.9/1.0/1.1 at the same compute (4 epochs of 3x data)
#   long      voices + more epochs: 30 instead of 12 (conf/ablation/long.yaml)
#   combined  voices + all three, 10 epochs of 3x data (conf/ablation/combined.yaml)
# Each row is decoded with CTC greedy search and with the character LM of run.sh stage 6
# (shared by every row: it depends on text only).
#
# Writes: DIR/exp/asr_abl_<row>/ (DIR/base/exp/asr_abl_base/), DIR/exp/lm_<lm_tag>/, and the
# `ablation` section of --results_file (default: RESULTS.md of this checkout).
set -euo pipefail
cd "$(dirname "$0")/.."

dir=.
rows="base voices specaug noise_rir sp long combined"
nj=2
table_only=false
results_file=RESULTS.md
note=""
extra=""                # one more row, LABEL=DECODE_DIR (e.g. a one-job decoding that times the RTF)
while [ $# -gt 0 ]; do
  case $1 in
    --dir|--rows|--nj|--table_only|--results_file|--note|--extra) v=${1#--}; printf -v "$v" '%s' "$2"; shift 2 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "local/run_ablation.sh: unknown option $1 (valid: --dir --rows --nj --table_only --results_file --note --extra)" >&2; exit 2 ;;
  esac
done
mkdir -p "$dir"; dir=$(cd "$dir" && pwd)

# row_opts ROW: the run.sh options of a row (its --dir included).
row_opts() {
  case $1 in
    base) echo "--dir $dir/base --train_voices base --asr_config conf/ablation/baseline.yaml" ;;
    voices) echo "--dir $dir --train_voices all --asr_config conf/ablation/baseline.yaml" ;;
    specaug) echo "--dir $dir --train_voices all --asr_config conf/ablation/specaug.yaml" ;;
    noise_rir) echo "--dir $dir --train_voices all --asr_config conf/ablation/noise_rir.yaml --noise_rir true" ;;
    sp) echo "--dir $dir --train_voices all --asr_config conf/ablation/baseline.yaml --speed_perturb_factors 0.9,1.0,1.1 --asr_args --max_epoch,4" ;;
    long) echo "--dir $dir --train_voices all --asr_config conf/ablation/long.yaml" ;;
    combined) echo "--dir $dir --train_voices all --asr_config conf/ablation/combined.yaml --noise_rir true --speed_perturb_factors 0.9,1.0,1.1" ;;
    *) echo "local/run_ablation.sh: no row '$1' (rows: base voices specaug noise_rir sp long combined)" >&2; exit 2 ;;
  esac
}
for r in $rows; do row_opts "$r" > /dev/null; done

# run ROW ARGS...: run.sh with the row's options (',' in an option value stands for a space).
run() {
  local r=$1; shift
  local opts=() o
  for o in $(row_opts "$r"); do opts+=("${o//,/ }"); done
  ./run.sh "${opts[@]}" --asr_tag "abl_$r" --results_file none --nj "$nj" "$@"
}

if ! $table_only; then
  # The LM depends on text only (the evaluation sets and the pool are the same for every row):
  # one for all rows, trained in DIR, linked into DIR/base.
  run voices --stage 1 --stop_stage 4
  run voices --stage 6 --stop_stage 6 --use_lm true
  mkdir -p "$dir/base/exp"; ln -sfn "$dir/exp/lm_char" "$dir/base/exp/lm_char"
  for r in $rows; do
    run "$r" --stage 1 --stop_stage 5                  # data, tokens, stats, training
    run "$r" --stage 7 --stop_stage 8                  # CTC greedy decoding and scoring
    run "$r" --stage 7 --stop_stage 8 --use_lm true    # decoding with the LM, scoring
  done
fi

greedy=decode_decode_ctc_valid.loss.ave
lm=decode_decode_ctc_lm_valid.loss.ave_lm_char
table=()
for r in $rows; do
  e=$dir/exp/asr_abl_$r
  [ "$r" = base ] && e=$dir/base/exp/asr_abl_base
  table+=(--row "$r, CTC greedy=$e/$greedy" --row "$r, + LM=$e/$lm")
done
[ -z "$extra" ] || table+=(--row "$extra")
# Each lever against the row it adds to: the LM against greedy, every other row against base.
for r in $rows; do
  table+=(--pair "$r, + LM::$r, CTC greedy")
  [ "$r" = base ] || [[ " $rows " != *" base "* ]] || table+=(--pair "$r, CTC greedy::base, CTC greedy" --pair "$r, + LM::base, + LM")
done
.venv/bin/python local/ablation.py "${table[@]}" --dump "$dir/dump/raw" \
  --sets dev test test_seen real --results_file "$results_file" \
  --command "local/run_ablation.sh --rows \"$rows\"${extra:+ --extra \"$extra\"}" --note "$note"
