#!/usr/bin/env bash
# espnet_omni recipe: data -> tokenizer -> stats -> training -> decoding -> scoring.
#
# Usage:
#   ./run.sh                                   # everything, embedded corpus, default config
#   ./run.sh --stage 5 --stop_stage 5          # one stage (training)
#   ./run.sh --size tiny --dir /tmp/x \
#            --asr_config conf/train_asr_tiny.yaml      # the smoke run the tests do
#   ./run.sh --corpus librispeech --train_set train_clean_100 \
#            --valid_set dev_clean --test_sets "test_clean test_other"   # LIBRISPEECH in db.sh
#   ./run.sh --help                            # options and stages
#
# Stages (finished ones are skipped on rerun: delete their .done marker to redo one;
# an interrupted training resumes from its last checkpoint):
#   1  data prep: synthesize the embedded corpus (+ the real LibriVox set), or LibriSpeech
#   2  format & filter: validate every wav/transcript, drop too short/long -> dump/raw/
#   3  tokenizer: sentencepiece model (bpe) or characters -> data/token_list/
#   4  collect stats: shapes and feature mean/var -> exp/asr_stats_<token>/
#   5  training (our task + trainer) -> exp/asr_<tag>/
#   6  decoding of every test set -> exp/asr_<tag>/decode_<inference>/<set>/text
#   7  scoring: WER/CER per test set and per voice family -> exp/asr_<tag>/RESULTS.md
#      and the section of --results_file for this experiment
#
# Inputs: conf/*.yaml, db.sh (corpus locations). Outputs: <dir>/{data,dump,exp}.
set -euo pipefail

# ------------------------------------------------------------------ options
stage=1                 # first stage to run
stop_stage=7            # last stage to run
dir=.                   # working directory for data/, dump/, exp/
corpus=embedded         # embedded | librispeech
size=default            # embedded corpus size: tiny | default
seed=0                  # corpus and training seed
nj=2                    # parallel jobs (synthesis, stats, decoding); 2 = this machine's cores
ngpu=0                  # GPUs for training (0 = CPU)
train_set=train
valid_set=dev
test_sets="dev test real"
librispeech_subsets="train-clean-100 dev-clean test-clean test-other"
on_error=fail           # format stage: fail on a bad wav/transcript, or drop it (logged count)
min_sec=0.5             # training/validation utterances shorter than this are dropped
max_sec=20              # ... and longer than this
token_type=char         # char | bpe
nbpe=300                # bpe vocabulary size (token_type=bpe)
asr_config=conf/train_asr_ctc.yaml
inference_config=conf/decode_ctc.yaml
asr_tag=""              # experiment name; default: the config's file name
asr_args=""             # extra arguments for asr_train (e.g. "--max_epoch 1")
inference_args=""       # extra arguments for asr_inference
inference_model=valid.loss.ave.pth
results_file=""         # markdown file whose section for this experiment is (re)written;
                        # default <dir>/RESULTS.md

valid_options=$(sed -n '/^# -* options/,/^# -* end of options/p' "$0" | grep -oE '^[a-z_]+=' | tr -d = | tr '\n' ' ')
# ------------------------------------------------------------------ end of options

command_line="./run.sh $*"
usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; echo "Options (defaults in $0): $valid_options"; }
while [ $# -gt 0 ]; do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --*)
      name=${1#--}; name=${name//-/_}
      if ! [[ " $valid_options " == *" $name "* ]]; then
        echo "run.sh: unknown option '$1'. Valid options: $(echo $valid_options | sed 's/\([a-z_]*\)/--\1/g')" >&2
        exit 2
      fi
      [ $# -ge 2 ] || { echo "run.sh: option '$1' needs a value" >&2; exit 2; }
      printf -v "$name" '%s' "$2"; shift 2 ;;
    *) echo "run.sh: unexpected argument '$1' (options are --name value; see --help)" >&2; exit 2 ;;
  esac
done

root=$(cd "$(dirname "$0")" && pwd)
cd "$root"
tools/install.sh
python=$root/.venv/bin/python
export PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH}
. ./db.sh

mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
data=$dir/data; dump=$dir/dump/raw; exp=$dir/exp
[ -n "$asr_tag" ] || { asr_tag=$(basename "$asr_config" .yaml); asr_tag=${asr_tag#train_}; asr_tag=${asr_tag#asr_}; }
[ -n "$results_file" ] || results_file=$dir/RESULTS.md
asr_exp=$exp/asr_$asr_tag
inference_tag=$(basename "$inference_config" .yaml)_${inference_model%.pth}
token_dir=$data/token_list/$token_type
[ "$token_type" = bpe ] && token_dir=${token_dir}$nbpe
stats_dir=$exp/asr_stats_$(basename "$token_dir")
case $token_type in char|bpe) ;; *) echo "run.sh: --token_type must be char or bpe, got '$token_type'" >&2; exit 2;; esac
case $corpus in embedded|librispeech) ;; *) echo "run.sh: --corpus must be embedded or librispeech, got '$corpus'" >&2; exit 2;; esac

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (run.sh stage ${current_stage:-0}) $*" >&2; }
# run_stage N: true when stage N is selected and not already done.
run_stage() {
  current_stage=$1
  [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ] || return 1
  if [ -f "$(done_marker "$1")" ]; then log "already done ($(done_marker "$1")); skipping"; return 1; fi
  log "starting"; return 0
}
done_marker() {
  case $1 in
    1) echo "$data/.stage1.$corpus.done" ;;
    2) echo "$dump/.stage2.$corpus.done" ;;
    3) echo "$token_dir/.done" ;;
    4) echo "$stats_dir/.done" ;;
    5) echo "$asr_exp/.stage5.done" ;;
    *) echo "$asr_exp/decode_$inference_tag/.stage$1.done" ;;
  esac
}
finish_stage() { mkdir -p "$(dirname "$(done_marker "$1")")"; touch "$(done_marker "$1")"; log "done"; }
all_sets="$train_set $valid_set $test_sets"
all_sets=$(echo $all_sets | tr ' ' '\n' | awk '!seen[$0]++' | tr '\n' ' ')

# ------------------------------------------------------------------ 1: data
if run_stage 1; then
  mkdir -p "$dump"
  if [ "$corpus" = embedded ]; then
    local/data.sh --out "$data" --size "$size" --seed "$seed" --nj "$nj"
  else
    local/librispeech_data.sh --out "$data" $librispeech_subsets
  fi
  finish_stage 1
fi

# ------------------------------------------------------------------ 2: format & filter
if run_stage 2; then
  for x in $all_sets; do
    limits=""
    [ "$x" = "$train_set" ] || [ "$x" = "$valid_set" ] && limits="--min_sec $min_sec --max_sec $max_sec"
    $python -m espnet_omni.corpus.format_data --in "$data/$x" --out "$dump/$x" \
      --on_error "$on_error" $limits
  done
  finish_stage 2
fi

# ------------------------------------------------------------------ 3: tokenizer
if run_stage 3; then
  mkdir -p "$token_dir"
  cut -d' ' -f2- "$dump/$train_set/text" > "$token_dir/train_text.txt"
  bpe_opts="--token_type char"
  if [ "$token_type" = bpe ]; then
    $python -m espnet2.bin.spm_train --input="$token_dir/train_text.txt" \
      --vocab_size="$nbpe" --model_type=unigram --model_prefix="$token_dir/bpe" \
      --character_coverage=1.0 --input_sentence_size=100000000
    bpe_opts="--token_type bpe --bpemodel $token_dir/bpe.model"
  fi
  $python -m espnet2.bin.tokenize_text $bpe_opts --input "$token_dir/train_text.txt" \
    --output "$token_dir/tokens.txt" --field 1- --cleaner none --g2p none \
    --write_vocabulary true --add_symbol "<blank>:0" --add_symbol "<unk>:1" \
    --add_symbol "<sos/eos>:-1"
  log "$(wc -l < "$token_dir/tokens.txt") tokens in $token_dir/tokens.txt"
  finish_stage 3
fi
token_opts="--token_type $token_type --token_list $token_dir/tokens.txt"
[ "$token_type" = bpe ] && token_opts="$token_opts --bpemodel $token_dir/bpe.model"

# ------------------------------------------------------------------ 4: collect stats
if run_stage 4; then
  rm -rf "$stats_dir/logdir"; mkdir -p "$stats_dir/logdir"
  n=$(( nj < $(wc -l < "$dump/$valid_set/wav.scp") ? nj : 1 ))
  for x in "$train_set" "$valid_set"; do
    split -n "l/$n" -d -a 2 "$dump/$x/wav.scp" "$stats_dir/logdir/$x.keys."
  done
  pids=()
  for i in $(seq 0 $((n - 1))); do
    j=$(printf '%02d' "$i")
    # Feature normalization is what we are computing: no normalize at this stage.
    $python -m espnet_omni.bin.asr_train --collect_stats true --ngpu 0 --num_workers 1 \
      --config "$asr_config" $token_opts --normalize none --use_preprocessor true \
      --train_data_path_and_name_and_type "$dump/$train_set/wav.scp,speech,sound" \
      --train_data_path_and_name_and_type "$dump/$train_set/text,text,text" \
      --valid_data_path_and_name_and_type "$dump/$valid_set/wav.scp,speech,sound" \
      --valid_data_path_and_name_and_type "$dump/$valid_set/text,text,text" \
      --train_shape_file "$stats_dir/logdir/$train_set.keys.$j" \
      --valid_shape_file "$stats_dir/logdir/$valid_set.keys.$j" \
      --output_dir "$stats_dir/logdir/stats.$j" > "$stats_dir/logdir/stats.$j.log" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || { log "collect stats failed: see $stats_dir/logdir/stats.*.log"; exit 1; }; done
  $python -m espnet2.bin.aggregate_stats_dirs \
    $(for i in $(seq 0 $((n - 1))); do printf -- '--input_dir %s ' "$stats_dir/logdir/stats.$(printf '%02d' "$i")"; done) \
    --output_dir "$stats_dir"
  finish_stage 4
fi

# ------------------------------------------------------------------ 5: training
if run_stage 5; then
  mkdir -p "$asr_exp"
  log "training $asr_exp (log: $asr_exp/train.log; TensorBoard: $asr_exp/tensorboard)"
  start=$SECONDS
  # The full ESPnet log goes to train.log; epoch summaries are echoed here.
  ( set +e; $python -m espnet_omni.bin.asr_train --config "$asr_config" $token_opts \
    --use_preprocessor true --ngpu "$ngpu" --seed "$seed" --resume true \
    --normalize_conf "stats_file=$stats_dir/train/feats_stats.npz" \
    --train_data_path_and_name_and_type "$dump/$train_set/wav.scp,speech,sound" \
    --train_data_path_and_name_and_type "$dump/$train_set/text,text,text" \
    --valid_data_path_and_name_and_type "$dump/$valid_set/wav.scp,speech,sound" \
    --valid_data_path_and_name_and_type "$dump/$valid_set/text,text,text" \
    --train_shape_file "$stats_dir/train/speech_shape" \
    --train_shape_file "$stats_dir/train/text_shape" \
    --valid_shape_file "$stats_dir/valid/speech_shape" \
    --valid_shape_file "$stats_dir/valid/text_shape" \
    --output_dir "$asr_exp" $asr_args 2>&1; echo $? > "$asr_exp/.train_rc" ) \
    | tee -a "$asr_exp/train.log" | { grep --line-buffered -E 'epoch results|Error' >&2 || true; }
  [ "$(cat "$asr_exp/.train_rc")" = 0 ] || { log "training failed: see $asr_exp/train.log"; exit 1; }
  echo $((SECONDS - start)) >> "$asr_exp/train.wall_seconds"
  finish_stage 5
fi

# ------------------------------------------------------------------ 6: decoding
if run_stage 6; then
  for x in $test_sets; do
    out=$asr_exp/decode_$inference_tag/$x
    rm -rf "$out/logdir"; mkdir -p "$out/logdir"
    n=$(( nj < $(wc -l < "$dump/$x/wav.scp") ? nj : 1 ))
    split -n "l/$n" -d -a 2 "$dump/$x/wav.scp" "$out/logdir/keys."
    log "decoding $x ($(wc -l < "$dump/$x/wav.scp") utts, $n jobs) -> $out"
    start=$SECONDS; pids=()
    for i in $(seq 0 $((n - 1))); do
      j=$(printf '%02d' "$i")
      OMP_NUM_THREADS=1 $python -m espnet_omni.bin.asr_inference --ngpu 0 --batch_size 1 \
        --config "$inference_config" \
        --asr_train_config "$asr_exp/config.yaml" --asr_model_file "$asr_exp/$inference_model" \
        --data_path_and_name_and_type "$dump/$x/wav.scp,speech,sound" \
        --key_file "$out/logdir/keys.$j" --output_dir "$out/logdir/out.$j" $inference_args \
        > "$out/logdir/decode.$j.log" 2>&1 &
      pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || { log "decoding failed: see $out/logdir/decode.*.log"; exit 1; }; done
    cat "$out"/logdir/out.*/1best_recog/text | sort > "$out/text"
    echo $((SECONDS - start)) > "$out/wall_seconds"
  done
  finish_stage 6
fi

# ------------------------------------------------------------------ 7: scoring
if run_stage 7; then
  $python -m espnet_omni.scoring.score --exp "$asr_exp" --decode "decode_$inference_tag" \
    --dump "$dump" --sets $test_sets --results_file "$results_file" \
    --command "$command_line" --config "$asr_config" --inference_config "$inference_config"
  finish_stage 7
fi
log "finished stages $stage..$stop_stage"
