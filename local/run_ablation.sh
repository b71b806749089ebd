#!/usr/bin/env bash
# The accuracy ablation (RESULTS.md, section `ablation`): each lever alone, then combined,
# every row trained by run.sh (stages 1-5) and decoded by local/score_dense.sh, greedy and with the language model.
#
# Usage:
#   local/run_ablation.sh                                  # every row (many CPU hours)
#   local/run_ablation.sh --rows "base voices combined"    # some rows; the table lists them
#   local/run_ablation.sh --dir ../abl --nj 2              # where data/, dump/, exp/ go
#   local/run_ablation.sh --table_only true                # only rewrite the table from what exists
#   local/run_ablation.sh --table_only true --note "..."     # with a provenance note under it
#   local/run_ablation.sh --rows long --table false        # train and decode rows, keep the table
#   local/run_ablation.sh --rows "base vtlp" --section ablation_mismatch --title "..."
#                                                          # a table of its own (another RESULTS section)
#
# Rows (experiment exp/asr_abl_<row>; run.sh options):
#   base      the corpus's own voices (DIR/base, --train_voices base, run.sh's default),
#             conf/ablation/baseline.yaml (the dense config before this work), 12 epochs
#   long      base + more epochs: 30 instead of 12 (conf/ablation/long.yaml)
#   interctc  base + self-conditioned intermediate CTC after block 2 (conf/ablation/interctc.yaml)
#   hybrid    base + an attention decoder, CTC weight 0.3 (conf/ablation/hybrid.yaml), decoded
#             jointly (CTC + attention + LM; greedy row: CTC + attention, no LM)
#   umvn      base + per-utterance mean/variance normalization (conf/ablation/umvn.yaml; offline only)
#   vtlp      base + vocal-tract-length perturbation of the filterbank per utterance, on the fly
#             (conf/ablation/vtlp.yaml, specaug: vtlp_specaug)
#   specaug80 base + the papers' SpecAugment on 80 mel bins (conf/ablation/specaug80.yaml)
#   voices    + speaker diversity (--train_voices all): pseudo-speakers, 60 more espeak
#             variants, wider train ranges; the rows below build on it, in DIR
#   specaug   voices + SpecAugment retuned (conf/ablation/specaug.yaml)
#   noise_rir voices + noise and reverberation (conf/ablation/noise_rir.yaml, --noise_rir true)
#   sp        voices + speed perturbation 0.9/1.0/1.1 at the same compute (4 epochs of 3x data)
#   combined  voices + all three, 10 epochs of 3x data (conf/ablation/combined.yaml)
# Each row is decoded with CTC greedy search and with the character LM of run.sh stage 6
# (shared by every row: it depends on text only).
#
# Writes: DIR/exp/asr_abl_<row>/ (DIR/base/exp/asr_abl_base/), DIR/exp/lm_<lm_tag>/, and the
# `ablation` section of --results_file (default: RESULTS.md of this checkout).
set -euo pipefail
cd "$(dirname "$0")/.."

dir=.
all_rows="base long interctc hybrid umvn vtlp specaug80 voices specaug noise_rir sp combined"
rows=$all_rows
nj=2
table_only=false
table=true
results_file=RESULTS.md
note=""
section=ablation        # the RESULTS section the table replaces (another keeps the ablation's rows)
title=""                # its heading (default: local/ablation.py's)
extra=""                # one more row, LABEL=DECODE_DIR (e.g. a one-job decoding that times the RTF)
while [ $# -gt 0 ]; do
  case $1 in
    --dir|--rows|--nj|--table_only|--table|--results_file|--note|--extra|--section|--title) v=${1#--}; printf -v "$v" '%s' "$2"; shift 2 ;;
    -h|--help) sed -n '2,36p' "$0"; exit 0 ;;
    *) echo "local/run_ablation.sh: unknown option $1 (valid: --dir --rows --nj --table_only --table --results_file --note --extra --section --title)" >&2; exit 2 ;;
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
    long) echo "--dir $dir/base --train_voices base --asr_config conf/ablation/long.yaml" ;;
    umvn) echo "--dir $dir/base --train_voices base --asr_config conf/ablation/umvn.yaml" ;;
    vtlp) echo "--dir $dir/base --train_voices base --asr_config conf/ablation/vtlp.yaml" ;;
    specaug80) echo "--dir $dir/base --train_voices base --asr_config conf/ablation/specaug80.yaml" ;;
    interctc) echo "--dir $dir/base --train_voices base --asr_config conf/ablation/interctc.yaml" ;;
    hybrid) echo "--dir $dir/base --train_voices base --asr_config conf/ablation/hybrid.yaml" ;;
    combined) echo "--dir $dir --train_voices all --asr_config conf/ablation/combined.yaml --noise_rir true --speed_perturb_factors 0.9,1.0,1.1" ;;
    *) echo "local/run_ablation.sh: no row '$1' (rows: $all_rows)" >&2; exit 2 ;;
  esac
}
for r in $rows; do row_opts "$r" > /dev/null; done

# row_exp ROW: the row's experiment directory (in the --dir of its run.sh options).
row_exp() {
  local o; read -r -a o <<< "$(row_opts "$1")"
  echo "${o[1]}/exp/asr_abl_$1"
}
# row_decode ROW greedy|lm: the decoding config of a row (hybrid rows decode jointly).
row_decode() {
  case $1:$2 in
    hybrid:greedy) echo conf/decode_hybrid.yaml ;;
    hybrid:lm) echo conf/decode_hybrid_lm.yaml ;;
    *:greedy) echo conf/decode_ctc.yaml ;;
    *:lm) echo conf/decode_ctc_lm.yaml ;;
  esac
}
# decode_dir ROW greedy|lm: where local/score_dense.sh writes that decoding.
decode_dir() {
  local c; c=$(basename "$(row_decode "$1" "$2")" .yaml)
  if [ "$2" = lm ]; then echo "$(row_exp "$1")/decode_${c}_valid.loss.ave_lm_char"
  else echo "$(row_exp "$1")/decode_${c}_valid.loss.ave"; fi
}

# run ROW ARGS...: run.sh with the row's options (',' in an option value stands for a space).
run() {
  local r=$1; shift
  local opts=() o
  for o in $(row_opts "$r"); do opts+=("${o//,/ }"); done
  ./run.sh "${opts[@]}" --asr_tag "abl_$r" --results_file none --nj "$nj" "$@"
}
# score ROW ARGS...: local/score_dense.sh (decoding and scoring of the row's dense model) with
# the row's options but --train_voices (a corpus option of run.sh stage 1).
score() {
  local r=$1; shift
  local opts=() o skip=false
  for o in $(row_opts "$r"); do
    if $skip; then skip=false; continue; fi
    [ "$o" = --train_voices ] && { skip=true; continue; }
    opts+=("${o//,/ }")
  done
  local/score_dense.sh "${opts[@]}" --asr_tag "abl_$r" --results_file none --nj "$nj" "$@"
}

if ! $table_only; then
  # The LM depends on text only (the evaluation sets and the pool are the same for every row):
  # one for all rows, trained in DIR, linked into DIR/base.
  run voices --stage 1 --stop_stage 4
  run voices --stage 6 --stop_stage 6 --use_lm true
  mkdir -p "$dir/base/exp"; ln -sfn "$dir/exp/lm_char" "$dir/base/exp/lm_char"
  for r in $rows; do
    run "$r" --stage 1 --stop_stage 5                  # data, tokens, stats, training
    score "$r" --use_lm false --inference_config "$(row_decode "$r" greedy)"
    score "$r" --use_lm true --inference_config "$(row_decode "$r" lm)"
  done
fi
$table || exit 0

# label ROW: the name of a row's decoding without LM (hybrid rows: joint CTC/attention beam search).
label() { if [ "$1" = hybrid ]; then echo "$1, CTC/attention beam"; else echo "$1, CTC greedy"; fi; }
table=()
for r in $rows; do
  table+=(--row "$(label "$r")=$(decode_dir "$r" greedy)" --row "$r, + LM=$(decode_dir "$r" lm)")
done
[ -z "$extra" ] || table+=(--row "$extra")
# Each lever against the row it adds to: the LM against greedy, every other row against base.
for r in $rows; do
  table+=(--pair "$r, + LM::$(label "$r")")
  [ "$r" = base ] || [[ " $rows " != *" base "* ]] || table+=(--pair "$(label "$r")::base, CTC greedy" --pair "$r, + LM::base, + LM")
done
title_opt=(); [ -z "$title" ] || title_opt=(--title "$title")
.venv/bin/python local/ablation.py "${table[@]}" --dump "$dir/dump/raw" \
  --sets dev test test_seen real --results_file "$results_file" --section "$section" "${title_opt[@]}" \
  --command "local/run_ablation.sh --rows \"$rows\"${extra:+ --extra \"$extra\"}$([ "$section" = ablation ] || echo " --section $section")" --note "$note"
