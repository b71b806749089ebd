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
#   2  format & filter: validate every wav/transcript, drop too short/long training
#      utterances (a warning counts them; the test sets keep every utterance) -> dump/raw/;
#      speed perturbation of the train set (--speed_perturb_factors) -> dump/raw/<train>_sp/;
#      noises and room impulse responses (--noise_rir true) -> dump/raw/noise_rir/
#   3  tokenizer: sentencepiece model (bpe) or characters -> data/token_list/
#   4  collect stats: shapes and feature mean/var -> exp/asr_stats_<token>/
#   5  training (our task + trainer) -> exp/asr_<tag>/
#   6  language model (--use_lm true): LM text (the corpus's sentences minus every
#      evaluation set's and the reserved slice) -> data/lm/, ESPnet's LM task (lm_config)
#      -> exp/lm_<lm_tag>/, perplexity on the valid set -> exp/lm_<lm_tag>/perplexity/
#   7  decoding of every test set (with the LM when --use_lm true)
#      -> exp/asr_<tag>/decode_<inference>/<set>/text
#   8  scoring: WER/CER per test set and per voice family -> exp/asr_<tag>/RESULTS.md
#      and the section of --results_file for this experiment
#  Table A (omni-sparsity; not run by default: ./run.sh --stage 9 --stop_stage 14):
#   9  supernet training from the dense model (omni_config) -> exp/asr_<tag>_omni/
#  10  individually pruned models, one per --prune_targets sparsity -> exp/asr_<tag>_prune<s>/
#  11  export of each individual model -> exp/asr_<tag>_prune<s>/export/
#  12  search of the supernet under each individual model's size, and export of the
#      sub-networks found -> exp/asr_<tag>_omni/search/, exp/asr_<tag>_omni/export_<s>/
#  13  decoding and scoring of every export
#  14  Table A and its Pareto plot -> the table_a section of --results_file, exp/table_a.png
#  Table B (dual mode; not run by default: ./run.sh --stage 15 --stop_stage 18):
#  15  wav2vec 2.0 pretraining on the training audio without its transcripts: SSL stats
#      -> exp/ssl_stats/; plain (ssl_config, for row 4) -> exp/ssl_w2v/; dual-mode (dense
#      full-context + sparse streaming, ssl_dual_config, for row 5) -> exp/ssl_w2v_dual/
#  16  training of the Table B rows (--table_b_rows) that need it: (1) is the dense model
#      of stage 5; (2) a sparse streaming model alone (stream_config) -> exp/asr_<tag>_stream/;
#      (3) the dual-mode supernet from random init (dual_config) -> exp/asr_<tag>_dual/;
#      (4), (5) the same fine-tuned from exp/ssl_w2v/, exp/ssl_w2v_dual/ (--init_param
#      maps the pre-encoder to encoder.embed) -> exp/asr_<tag>_dual_w2v/, ..._dual_w2vdual/
#  17  both modes of every row (espnet_omni.bin.dual_mode_eval): the full-context network
#      exported and decoded (ESPnet's Speech2Text, --inference_config), the streaming one
#      decoded chunk by chunk on one thread (RTF, per-chunk latency) -> <row exp>/table_b/
#  18  Table B -> the table_b section of --results_file
#
# Inputs: conf/*.yaml, db.sh (corpus locations). Outputs: <dir>/{data,dump,exp}.
set -euo pipefail

# ------------------------------------------------------------------ options
stage=1                 # first stage to run
stop_stage=8            # last stage to run
dir=.                   # working directory for data/, dump/, exp/
corpus=embedded         # embedded | librispeech
size=default            # embedded corpus size: tiny | default
train_voices=base       # embedded corpus train voices: base (the recorded voices and espeak-ng
                        # variants as they are) | all (+ pseudo-speakers, 60 more espeak variants,
                        # wider ranges: no better on dev/test at this compute, RESULTS.md `ablation`)
seed=0                  # corpus and training seed
nj=2                    # parallel jobs (synthesis, stats, decoding); 2 = this machine's cores
ngpu=0                  # GPUs for training (0 = CPU)
train_set=train
valid_set=dev
test_sets="dev test test_seen real"
librispeech_subsets="train-clean-100 dev-clean test-clean test-other"
on_error=fail           # format stage: fail on a bad wav/transcript, or drop it (logged count)
min_sec=0.5             # train (and valid, unless it is a test set) utterances shorter than
max_sec=20              # min_sec or longer than max_sec are dropped; test sets never are
speed_perturb_factors=""  # e.g. "0.9 1.0 1.1": train on a speed-perturbed copy of the train set
                        # (ESPnet's asr.sh way: each factor its own speaker, ids sp0.9-...)
noise_rir=false         # true: generate noises and RIRs (stage 2) and pass them to the training's
                        # preprocessor (--noise_scp/--rir_scp; the apply probabilities and SNR
                        # range are in the ASR config: noise_apply_prob, rir_apply_prob, noise_db_range)
token_type=char         # char | bpe
nbpe=300                # bpe vocabulary size (token_type=bpe)
asr_config=conf/train_asr_ctc.yaml
inference_config=""     # decoding config; default conf/decode_ctc_lm.yaml with the LM, else
                        # conf/decode_ctc.yaml (CTC greedy)
asr_tag=""              # experiment name; default: the config's file name
asr_args=""             # extra arguments for asr_train (e.g. "--max_epoch 1")
inference_args=""       # extra arguments for asr_inference
inference_model=valid.loss.ave.pth
inference_tag=""        # decode directory name (decode_<tag>); default: from the decoding config,
                        # the model and the LM (set it to keep decodes with other --inference_args apart)
use_lm=true             # stage 6 trains a language model and stage 7 decodes with it
                        # (false: CTC greedy decoding, no LM)
lm_config=conf/train_lm_char.yaml
lm_tag=""               # LM experiment name; default: the LM config's file name
lm_args=""              # extra arguments for lm_train
lm_inference_model=valid.loss.ave.pth
results_file=""         # markdown file whose section for this experiment is (re)written;
                        # default <dir>/RESULTS.md
# Table A (omni-sparsity, stages 8-13; they start from the dense model of stage 5)
omni_config=conf/train_asr_omni.yaml    # the supernet
omni_tag=omni                           # the supernet's experiment: exp/asr_<asr_tag>_<omni_tag>
prune_config=conf/train_asr_prune.yaml  # the individually pruned models (gradual magnitude pruning)
prune_targets="0.5 0.6 0.7 0.8 0.9"     # one individual model per sparsity; the search budgets are their sizes
prune_ramp_steps=400                    # optimizer steps of the cubic sparsity ramp of each individual model
export_format=sparse                    # sparse | dense | row (see espnet_omni.bin.export)
bn_calib_utts=200                       # the BatchNorm statistics of every searched and exported
                                        # sub-network are re-estimated on N training utterances
                                        # (espnet_omni.inference.bn_calib); 0: keep the checkpoint's
search_args="--population 12 --generations 4"
                                        # espnet_omni.bin.search arguments: <= 48 dev decodes per
                                        # budget (a shared cache), each on the whole dev set (a
                                        # 100-utterance subset picked sub-networks that did not
                                        # carry over to test)
supernet_args=""                        # extra asr_train arguments of the supernet (stage 8)
table_a_also=""                         # other supernet runs shown beside it in Table A (stage 13),
                                        # "LABEL=EXP_DIR ..." (each searched, exported, decoded)
prune_args=""                           # extra asr_train arguments of each individual model (stage 9)
# Table B (dual mode, stages 15-17; row 1 is the dense model of stage 5)
table_b_rows="1 2 3 4 5"                # rows to pretrain, train, decode and tabulate
stream_config=conf/train_asr_stream.yaml  # row 2: a sparse streaming model trained alone
dual_config=conf/train_asr_dual.yaml      # rows 3-5: the dual-mode supernet (fine-tuning)
ssl_config=conf/pretrain_w2v.yaml         # row 4's pretraining: plain wav2vec 2.0
ssl_dual_config=conf/pretrain_w2v_dual.yaml  # row 5's pretraining: dual-mode wav2vec 2.0
ssl_args=""                             # extra ssl_train arguments (both pretrainings)
stream_args=""                          # streaming options of espnet_omni.bin.dual_mode_eval (e.g.
                                        # "--chunk_size 8"; default: each encoder's streaming config)
# ------------------------------------------------------------------ end of options
valid_options=$(sed -n '/^# -* options/,/^# -* end of options/p' "$0" | grep -oE '^[a-z_]+=' | tr -d = | tr '\n' ' ')

command_line="./run.sh"; [ $# -eq 0 ] || command_line+=$(printf ' %q' "$@")
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; echo "Options (defaults in $0): $valid_options"; }
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

case $bn_calib_utts in
  ''|*[!0-9]*) echo "run.sh: --bn_calib_utts '$bn_calib_utts': expected a whole number of utterances (0: off)" >&2; exit 2 ;;
esac

last_stage=18
for v in stage stop_stage; do
  case ${!v} in ''|*[!0-9]*) echo "run.sh: --$v '${!v}': expected a stage number 1..$last_stage (see --help)" >&2; exit 2 ;; esac
  if [ "${!v}" -lt 1 ] || [ "${!v}" -gt "$last_stage" ]; then
    echo "run.sh: --$v ${!v}: no such stage; valid stages: 1..$last_stage (see --help)" >&2; exit 2
  fi
done
if [ "$stage" -gt "$stop_stage" ]; then
  echo "run.sh: --stage $stage is after --stop_stage $stop_stage: nothing would run; valid stages: 1..$last_stage" >&2; exit 2
fi
case $use_lm in true|false) ;; *) echo "run.sh: --use_lm must be true or false, got '$use_lm'" >&2; exit 2 ;; esac
case $noise_rir in true|false) ;; *) echo "run.sh: --noise_rir must be true or false, got '$noise_rir'" >&2; exit 2 ;; esac
if [ -z "$inference_config" ]; then
  if $use_lm; then inference_config=conf/decode_ctc_lm.yaml; else inference_config=conf/decode_ctc.yaml; fi
fi

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
[ -n "$lm_tag" ] || { lm_tag=$(basename "$lm_config" .yaml); lm_tag=${lm_tag#train_}; lm_tag=${lm_tag#lm_}; }
lm_exp=$exp/lm_$lm_tag
if [ -z "$inference_tag" ]; then
  inference_tag=$(basename "$inference_config" .yaml)_${inference_model%.pth}
  if $use_lm; then inference_tag=${inference_tag}_lm_$lm_tag; fi
fi
token_dir=$data/token_list/$token_type
[ "$token_type" = bpe ] && token_dir=${token_dir}$nbpe
# The ASR training set: the speed-perturbed copy when --speed_perturb_factors is set.
asr_train_set=$train_set
[ -z "$speed_perturb_factors" ] || asr_train_set=${train_set}_sp
stats_dir=$exp/asr_stats_$(basename "$token_dir")
[ "$asr_train_set" = "$train_set" ] || stats_dir=${stats_dir}_sp
omni_exp=${asr_exp}_$omni_tag
case $token_type in char|bpe) ;; *) echo "run.sh: --token_type must be char or bpe, got '$token_type'" >&2; exit 2;; esac
case $corpus in embedded|librispeech) ;; *) echo "run.sh: --corpus must be embedded or librispeech, got '$corpus'" >&2; exit 2;; esac

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (run.sh stage ${current_stage:-0}) $*" >&2; }
# run_stage N: true when stage N is selected and not already done.
run_stage() {
  current_stage=$1
  [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ] || return 1
  local marker; marker=$(done_marker "$1")
  # Decoding and scoring check each set themselves (make-style, decode_model): they always run.
  if [ -f "$marker" ] && { [ "$1" = 7 ] || [ "$1" = 8 ]; }; then log "starting (sets already up to date are not redone)"; return 0; fi
  if [ -f "$marker" ]; then
    # The marker holds the options the stage was made with (empty: made before markers
    # recorded them); other options now would silently reuse outputs made otherwise.
    if [ -s "$marker" ] && [ "$(cat "$marker")" != "$(stage_options "$1")" ]; then
      log "error: $marker was made with other options than this run's:"
      diff <(cat "$marker") <(stage_options "$1") | sed -n 's/^< /    made with: /p; s/^> /    now:       /p' >&2
      log "use another --dir (or --asr_tag / --lm_tag for stages 5-6), or remove $marker to redo stage $1"
      exit 1
    fi
    log "already done ($marker); skipping"; return 1
  fi
  log "starting"; return 0
}
# stage_options N: the options whose value changes what stage N makes (one 'name=value' a line).
stage_options() {
  local names
  case $1 in
    1) names="corpus size seed train_voices librispeech_subsets" ;;
    2) names="on_error min_sec max_sec train_set valid_set test_sets" ;;
    3) names="token_type nbpe train_set" ;;
    4) names="speed_perturb_factors" ;;
    5) names="asr_config asr_args seed speed_perturb_factors noise_rir" ;;
    6) names="lm_config lm_args" ;;
    *) names="" ;;
  esac
  local n; for n in $names; do echo "$n=${!n}"; done
}
done_marker() {
  case $1 in
    1) echo "$data/.stage1.$corpus.done" ;;
    2) echo "$dump/.stage2.$corpus.done" ;;
    3) echo "$token_dir/.done" ;;
    4) echo "$stats_dir/.done" ;;
    5) echo "$asr_exp/.stage5.done" ;;
    6) echo "$lm_exp/.stage6.done" ;;
    9|10|11|12|13|14) echo "$omni_exp/.stage$1.done" ;;
    15|16|17|18) echo "$exp/table_b/.stage$1.rows${table_b_rows// /}.done" ;;
    *) echo "$asr_exp/decode_$inference_tag/.stage$1.done" ;;
  esac
}
finish_stage() { mkdir -p "$(dirname "$(done_marker "$1")")"; stage_options "$1" > "$(done_marker "$1")"; log "done"; }
all_sets="$train_set $valid_set $test_sets"
all_sets=$(echo $all_sets | tr ' ' '\n' | awk '!seen[$0]++' | tr '\n' ' ')

# ------------------------------------------------------------------ 1: data
if run_stage 1; then
  mkdir -p "$dump"
  if [ "$corpus" = embedded ]; then
    local/data.sh --out "$data" --size "$size" --seed "$seed" --nj "$nj" \
      --train_voices "$train_voices"
  else
    local/librispeech_data.sh --out "$data" $librispeech_subsets
  fi
  finish_stage 1
fi

# ------------------------------------------------------------------ 2: format & filter
if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ] && run_stage 2; then
  for x in $all_sets; do
    # Duration limits for the training data only: a test set (the valid set too when it is
    # scored, as dev is) keeps every utterance, so its WER covers all of it.
    limits=""
    case " $test_sets " in
      *" $x "*) ;;
      *) [ "$x" = "$train_set" ] || [ "$x" = "$valid_set" ] && limits="--min_sec $min_sec --max_sec $max_sec" ;;
    esac
    $python -m espnet_omni.corpus.format_data --in "$data/$x" --out "$dump/$x" \
      --on_error "$on_error" $limits
  done
  finish_stage 2
fi
# The optional parts of stage 2 have markers of their own, so that a finished stage 2
# gains them when the options ask for them later.
if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  current_stage=2
  sp_marker=$dump/$asr_train_set/.speed_perturb.done
  if [ -n "$speed_perturb_factors" ] && [ "$(cat "$sp_marker" 2>/dev/null)" != "$speed_perturb_factors" ]; then
    log "speed perturbation ($speed_perturb_factors) of $train_set -> $dump/$asr_train_set"
    $python -m espnet_omni.corpus.speed_perturb --in "$dump/$train_set" --out "$dump/$asr_train_set" \
      --factors $speed_perturb_factors --nj "$nj"
    echo "$speed_perturb_factors" > "$sp_marker"
  fi
  if $noise_rir && [ ! -f "$dump/noise_rir/.done" ]; then
    log "noises and room impulse responses -> $dump/noise_rir"
    $python -m espnet_omni.corpus.noise_rir --out "$dump/noise_rir" --seed "$seed" \
      --babble_from "$dump/$train_set/wav.scp"
    touch "$dump/noise_rir/.done"
  fi
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
  for x in "$asr_train_set" "$valid_set"; do
    split -n "l/$n" -d -a 2 "$dump/$x/wav.scp" "$stats_dir/logdir/$x.keys."
  done
  pids=()
  for i in $(seq 0 $((n - 1))); do
    j=$(printf '%02d' "$i")
    # Feature normalization is what we are computing: no normalize at this stage.
    $python -m espnet_omni.bin.asr_train --collect_stats true --ngpu 0 --num_workers 1 \
      --config "$asr_config" $token_opts --normalize none --use_preprocessor true \
      --train_data_path_and_name_and_type "$dump/$asr_train_set/wav.scp,speech,sound" \
      --train_data_path_and_name_and_type "$dump/$asr_train_set/text,text,text" \
      --valid_data_path_and_name_and_type "$dump/$valid_set/wav.scp,speech,sound" \
      --valid_data_path_and_name_and_type "$dump/$valid_set/text,text,text" \
      --train_shape_file "$stats_dir/logdir/$asr_train_set.keys.$j" \
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

# ------------------------------------------------------------------ shared steps
# run_training MODULE CONFIG EXP_DIR [args...]: an ESPnet training (resuming) into EXP_DIR.
run_training() {
  local module=$1 config=$2 dir=$3; shift 3
  mkdir -p "$dir"
  log "training $dir (log: $dir/train.log; TensorBoard: $dir/tensorboard)"
  local start=$SECONDS
  # The full ESPnet log goes to train.log; epoch summaries are echoed here.
  ( set +e; $python -m "$module" --config "$config" $token_opts \
    --use_preprocessor true --ngpu "$ngpu" --seed "$seed" --resume true \
    --output_dir "$dir" "$@" 2>&1; echo $? > "$dir/.train_rc" ) \
    | tee -a "$dir/train.log" | { grep --line-buffered -E 'epoch results|Error' >&2 || true; }
  [ "$(cat "$dir/.train_rc")" = 0 ] || { log "training failed: see $dir/train.log"; exit 1; }
  echo $((SECONDS - start)) >> "$dir/train.wall_seconds"
}

# train_asr CONFIG EXP_DIR [asr_train args...]: ASR training (resuming) into EXP_DIR.
train_asr() {
  local config=$1 dir=$2; shift 2
  local aug=()
  $noise_rir && aug=(--noise_scp "$dump/noise_rir/noise.scp" --rir_scp "$dump/noise_rir/rir.scp")
  run_training espnet_omni.bin.asr_train "$config" "$dir" "${aug[@]}" \
    --normalize_conf "stats_file=$stats_dir/train/feats_stats.npz" \
    --train_data_path_and_name_and_type "$dump/$asr_train_set/wav.scp,speech,sound" \
    --train_data_path_and_name_and_type "$dump/$asr_train_set/text,text,text" \
    --valid_data_path_and_name_and_type "$dump/$valid_set/wav.scp,speech,sound" \
    --valid_data_path_and_name_and_type "$dump/$valid_set/text,text,text" \
    --train_shape_file "$stats_dir/train/speech_shape" \
    --train_shape_file "$stats_dir/train/text_shape" \
    --valid_shape_file "$stats_dir/valid/speech_shape" \
    --valid_shape_file "$stats_dir/valid/text_shape" "$@"
}

# decode_model TRAIN_CONFIG MODEL_FILE DECODE_DIR: decode every test set into DECODE_DIR/<set>/text.
# A set whose text is complete, newer than the model and both configs, and made with the same
# inference options is kept (make-style), so a re-run of an interrupted stage decodes only
# what is missing.
decode_model() {
  local config=$1 model=$2 ddir=$3 x out n i j pids opts lm_opts=() lm_model sets=() args wall
  lm_model=$model
  if $use_lm; then
    lm_model=$lm_exp/$lm_inference_model
    [ -f "$lm_model" ] || { log "decoding with the LM needs $lm_model: run stage 6 (or --use_lm false)"; exit 1; }
    lm_opts=(--lm_train_config "$lm_exp/config.yaml" --lm_file "$lm_model")
  fi
  opts="inference_config=$inference_config inference_args=$inference_args ${lm_opts[*]}"
  for x in $test_sets; do
    out=$ddir/$x
    if [ -f "$out/text" ] && [ "$(wc -l < "$out/text")" = "$(wc -l < "$dump/$x/wav.scp")" ] \
      && [ "$out/text" -nt "$model" ] && [ "$out/text" -nt "$config" ] && [ "$out/text" -nt "$inference_config" ] \
      && [ "$out/text" -nt "$lm_model" ] \
      && { [ ! -f "$out/decode.opts" ] && [ -z "$inference_args" ] || [ "$(cat "$out/decode.opts" 2>/dev/null)" = "$opts" ]; }; then
      log "decoding $x: kept $out/text (complete, newer than the model and configs)"
      continue
    fi
    rm -rf "$out/logdir" "$out/text" "$out/decode.opts"; mkdir -p "$out/logdir"
    n=$(( nj < $(wc -l < "$dump/$x/wav.scp") ? nj : 1 ))
    split -n "l/$n" -d -a 2 "$dump/$x/wav.scp" "$out/logdir/keys."
    log "decoding $x ($(wc -l < "$dump/$x/wav.scp") utts, $n jobs) -> $out"
    sets+=("$x")
  done
  [ ${#sets[@]} -gt 0 ] || return 0
  # one process per job decodes its share of every set (ESPnet's start-up paid once per job)
  pids=()
  for i in $(seq 0 $((nj - 1))); do
    j=$(printf '%02d' "$i"); args=()
    for x in "${sets[@]}"; do
      [ -f "$ddir/$x/logdir/keys.$j" ] && args+=(--set "$dump/$x/wav.scp" "$ddir/$x/logdir/keys.$j" "$ddir/$x/logdir/out.$j")
    done
    [ ${#args[@]} -gt 0 ] || continue
    OMP_NUM_THREADS=1 $python -m espnet_omni.bin.asr_inference --ngpu 0 --batch_size 1 \
      --config "$inference_config" --asr_train_config "$config" --asr_model_file "$model" \
      "${args[@]}" "${lm_opts[@]}" $inference_args > "$ddir/decode.$j.log" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || { log "decoding failed: see $ddir/decode.*.log"; exit 1; }; done
  for x in "${sets[@]}"; do
    out=$ddir/$x
    cat "$out"/logdir/out.*/1best_recog/text | sort > "$out/text.tmp"
    # the set's wall time: its slowest job's own decoding seconds (the jobs ran side by side)
    wall=$(cat "$out"/logdir/out.*/seconds | sort -g | tail -n 1)
    echo "$opts" > "$out/decode.opts"; echo "$wall" > "$out/wall_seconds"; mv "$out/text.tmp" "$out/text"
  done
}

# score_decode EXP_DIR DECODE_NAME CONFIG [RESULTS_FILE]: WER/CER tables (scores.json), and
# the section of RESULTS_FILE (default $results_file; "none": no section).
score_decode() {
  local rf=${4:-$results_file} opt=()
  [ "$rf" = none ] || opt=(--results_file "$rf")
  $python -m espnet_omni.scoring.score --exp "$1" --decode "$2" \
    --dump "$dump" --sets $test_sets "${opt[@]}" \
    --command "$command_line" --config "$3" --inference_config "$inference_config"
}

# ------------------------------------------------------------------ 5: training
if run_stage 5; then
  train_asr "$asr_config" "$asr_exp" $asr_args
  finish_stage 5
fi

# ------------------------------------------------------------------ 6: language model
if $use_lm && run_stage 6; then
  lm_data=$data/lm
  mkdir -p "$lm_data" "$lm_exp"
  lm_src=(--plain "$data/lm_pool.txt")
  if [ "$corpus" = embedded ]; then
    [ -f "$data/lm_pool.txt" ] || { log "no LM text: $data/lm_pool.txt not found (stage 1 of the embedded corpus writes it)"; exit 1; }
  else
    lm_src=(--kaldi "$dump/$train_set/text")
  fi
  $python -m espnet_omni.corpus.lm_text "${lm_src[@]}" --out "$lm_data/train.txt" \
    --exclude $(for x in $valid_set $test_sets; do printf '%s ' "$dump/$x/text"; done)
  lm_dev=$dump/$valid_set/text
  lm_stats=$exp/lm_stats_$(basename "$token_dir")
  log "LM text: $(wc -l < "$lm_data/train.txt") sentences in $lm_data/train.txt; LM stats -> $lm_stats"
  $python -m espnet2.bin.lm_train --collect_stats true --ngpu 0 --num_workers 1 --config "$lm_config" \
    $token_opts --non_linguistic_symbols none --cleaner none --g2p none \
    --train_data_path_and_name_and_type "$lm_data/train.txt,text,text" \
    --valid_data_path_and_name_and_type "$lm_dev,text,text" \
    --train_shape_file "$lm_data/train.txt" --valid_shape_file "$lm_dev" --batch_type unsorted --batch_size 64 \
    --output_dir "$lm_stats" > "$exp/lm_stats.log" 2>&1 || { log "LM stats failed: see $exp/lm_stats.log"; exit 1; }
  run_training espnet2.bin.lm_train "$lm_config" "$lm_exp" \
    --non_linguistic_symbols none --cleaner none --g2p none \
    --train_data_path_and_name_and_type "$lm_data/train.txt,text,text" \
    --valid_data_path_and_name_and_type "$lm_dev,text,text" \
    --train_shape_file "$lm_stats/train/text_shape" --valid_shape_file "$lm_stats/valid/text_shape" \
    $lm_args
  $python -m espnet2.bin.lm_calc_perplexity --ngpu 0 --batch_size 64 \
    --data_path_and_name_and_type "$lm_dev,text,text" --train_config "$lm_exp/config.yaml" \
    --model_file "$lm_exp/$lm_inference_model" --output_dir "$lm_exp/perplexity_$valid_set" \
    > "$lm_exp/perplexity.log" 2>&1 || { log "perplexity failed: see $lm_exp/perplexity.log"; exit 1; }
  log "LM perplexity on $valid_set: $(cat "$lm_exp/perplexity_$valid_set/ppl")"
  finish_stage 6
fi

# ------------------------------------------------------------------ 7: decoding
if run_stage 7; then
  decode_model "$asr_exp/config.yaml" "$asr_exp/$inference_model" "$asr_exp/decode_$inference_tag"
  finish_stage 7
fi

# ------------------------------------------------------------------ 8: scoring
if run_stage 8; then
  score_decode "$asr_exp" "decode_$inference_tag" "$asr_config"
  finish_stage 8
fi
# ------------------------------------------------------------------ Table A
# calibration_opts: BatchNorm recalibration of each sub-network on training data (search, export).
calibration_opts=()
if [ "$bn_calib_utts" -gt 0 ]; then
  calibration_opts=(--calibration_dir "$dump/$train_set" --calibration_utts "$bn_calib_utts")
fi
# export_model EXP_DIR SUBNET_YAML OUT_DIR: a standalone model directory.
export_model() {
  $python -m espnet_omni.bin.export --asr_train_config "$1/config.yaml" \
    --asr_model_file "$1/$inference_model" --subnet "$2" --format "$export_format" --out_dir "$3" \
    "${calibration_opts[@]}"
}
prune_exp() { echo "${asr_exp}_prune$1"; }

if run_stage 9; then
  train_asr "$omni_config" "$omni_exp" --init_param "$asr_exp/$inference_model" $supernet_args
  finish_stage 9
fi

if run_stage 10; then
  for s in $prune_targets; do
    train_asr "$prune_config" "$(prune_exp "$s")" --init_param "$asr_exp/$inference_model" \
      --omni_conf "{sampler: {rule: fixed, fixed: [$s]}, schedule: {final_sparsity: $s, end_step: $prune_ramp_steps}, valid_sparsities: [$s]}" \
      $prune_args
  done
  finish_stage 10
fi

if run_stage 11; then
  for s in $prune_targets; do
    d=$(prune_exp "$s")
    $python -m espnet_omni.bin.subnet_yaml --asr_train_config "$d/config.yaml" --sparsity "$s" --out "$d/subnet.yaml"
    export_model "$d" "$d/subnet.yaml" "$d/export"
  done
  finish_stage 11
fi

if run_stage 12; then
  # The budget of each search is the individual model's encoder size (subnet.json of stage 10),
  # all read by one Python start-up; budget_list[i] belongs to the i-th prune target.
  budgets=$($python -c 'import json, sys; print(" ".join(str(json.load(open(f))["encoder_nonzero_params"]) for f in sys.argv[1:]))' \
    $(for s in $prune_targets; do echo "$(prune_exp "$s")/subnet.json"; done))
  read -r -a budget_list <<< "$budgets"
  log "search budgets (non-zero encoder parameters of the individual models): $budgets"
  $python -m espnet_omni.bin.search --asr_train_config "$omni_exp/config.yaml" \
    --asr_model_file "$omni_exp/$inference_model" --data_dir "$dump/$valid_set" \
    --budgets $budgets --budget_unit params --out_dir "$omni_exp/search" "${calibration_opts[@]}" $search_args
  i=0
  for s in $prune_targets; do
    b=${budget_list[$i]}; i=$((i + 1))
    export_model "$omni_exp" "$omni_exp/search/subnet_$b.yaml" "$omni_exp/export_$s"
  done
  finish_stage 12
fi

if run_stage 13; then
  for s in $prune_targets; do
    for d in "$(prune_exp "$s")/export" "$omni_exp/export_$s"; do
      decode_model "$d/config.yaml" "$d/model.pth" "$d/decode_$inference_tag"
      score_decode "$d" "decode_$inference_tag" "$d/config.yaml" none  # Table A (stage 13) sums them up
    done
  done
  finish_stage 13
fi

if run_stage 14; then
  $python local/table_a.py --dense "$asr_exp" --omni "$omni_exp" \
    --prune $(for s in $prune_targets; do printf '%s ' "$(prune_exp "$s")"; done) \
    --targets $prune_targets --decode "decode_$inference_tag" --sets $test_sets \
    --results_file "$results_file" --plot "$exp/table_a.png" --command "$command_line" --dump "$dump" \
    --also $table_a_also
  finish_stage 14
fi
# ------------------------------------------------------------------ Table B
# row_exp N: the experiment directory of Table B row N.
row_exp() {
  case $1 in
    1) echo "$asr_exp" ;;
    2) echo "${asr_exp}_stream" ;;
    3) echo "${asr_exp}_dual" ;;
    4) echo "${asr_exp}_dual_w2v" ;;
    5) echo "${asr_exp}_dual_w2vdual" ;;
    *) echo "run.sh: --table_b_rows: no row '$1' (rows: 1 2 3 4 5)" >&2; exit 2 ;;
  esac
}
for r in $table_b_rows; do row_exp "$r" > /dev/null; done
ssl_stats=$exp/ssl_stats
ssl_exp() { case $1 in 4) echo "$exp/ssl_w2v" ;; 5) echo "$exp/ssl_w2v_dual" ;; esac; }
ssl_config_of() { case $1 in 4) echo "$ssl_config" ;; 5) echo "$ssl_dual_config" ;; esac; }

if run_stage 15; then
  for r in $table_b_rows; do
    [ "$r" = 4 ] || [ "$r" = 5 ] || continue
    if [ ! -f "$ssl_stats/.done" ]; then
      # Shapes and feature mean/var of the audio alone (wav2vec 2.0 reads no transcripts).
      log "SSL stats -> $ssl_stats"
      $python -m espnet_omni.bin.ssl_train --collect_stats true --ngpu 0 --num_workers 1 \
        --config "$(ssl_config_of "$r")" $token_opts --normalize none --use_preprocessor true \
        --train_data_path_and_name_and_type "$dump/$train_set/wav.scp,speech,sound" \
        --valid_data_path_and_name_and_type "$dump/$valid_set/wav.scp,speech,sound" \
        --train_shape_file "$dump/$train_set/wav.scp" --valid_shape_file "$dump/$valid_set/wav.scp" \
        --batch_type unsorted --batch_size 8 --output_dir "$ssl_stats" > "$exp/ssl_stats.log" 2>&1 \
        || { log "SSL stats failed: see $exp/ssl_stats.log"; exit 1; }
      touch "$ssl_stats/.done"
    fi
    run_training espnet_omni.bin.ssl_train "$(ssl_config_of "$r")" "$(ssl_exp "$r")" \
      --normalize_conf "stats_file=$ssl_stats/train/feats_stats.npz" \
      --train_data_path_and_name_and_type "$dump/$train_set/wav.scp,speech,sound" \
      --valid_data_path_and_name_and_type "$dump/$valid_set/wav.scp,speech,sound" \
      --train_shape_file "$ssl_stats/train/speech_shape" --valid_shape_file "$ssl_stats/valid/speech_shape" \
      $ssl_args
  done
  ssl_dirs=$(for r in $table_b_rows; do ssl_exp "$r"; done)
  if [ -n "$ssl_dirs" ]; then  # does pretraining learn? (accuracy vs chance, code perplexity)
    $python local/table_b.py --pretrain_only $ssl_dirs --results_file "$results_file" --command "$command_line"
  fi
  finish_stage 15
fi

if run_stage 16; then
  for r in $table_b_rows; do
    case $r in
      2) train_asr "$stream_config" "$(row_exp 2)" ;;
      3) train_asr "$dual_config" "$(row_exp 3)" ;;
      4|5)
        m=$(ssl_exp "$r")/$inference_model
        [ -f "$m" ] || { log "row $r needs the pretrained $m (stage 14)"; exit 1; }
        train_asr "$dual_config" "$(row_exp "$r")" \
          --init_param "$m:preencoder:encoder.embed" "$m:encoder:encoder" ;;
    esac
  done
  finish_stage 16
fi

if run_stage 17; then
  for r in $table_b_rows; do
    d=$(row_exp "$r"); t=$d/table_b; mkdir -p "$t"
    log "row $r: both modes of $d (log: $t/eval.log)"
    $python -m espnet_omni.bin.dual_mode_eval --asr_train_config "$d/config.yaml" \
      --asr_model_file "$d/$inference_model" --inference_config "$inference_config" \
      --decode_name "decode_$inference_tag" --format "$export_format" --out_dir "$t" \
      $(for x in $test_sets; do printf -- '--data_dir %s ' "$dump/$x"; done) $stream_args \
      > "$t/eval.log" 2>&1 || { log "evaluation failed: see $t/eval.log"; exit 1; }
    grep -E "sparsity|RTF" "$t/eval.log" | sed 's/^/    /' >&2 || true
    score_decode "$t/export_full" "decode_$inference_tag" "$t/export_full/config.yaml" none
    score_decode "$t" stream "$d/config.yaml" none
  done
  finish_stage 17
fi

if run_stage 18; then
  $python local/table_b.py --rows $table_b_rows \
    --exps $(for r in $table_b_rows; do printf '%s ' "$(row_exp "$r")"; done) \
    --pretrain $(for r in $table_b_rows; do [ -z "$(ssl_exp "$r")" ] || printf '%s=%s ' "$r" "$(ssl_exp "$r")"; done) \
    --decode "decode_$inference_tag" --sets $test_sets --dump "$dump" \
    --results_file "$results_file" --command "$command_line"
  finish_stage 18
fi
log "finished stages $stage..$stop_stage"
