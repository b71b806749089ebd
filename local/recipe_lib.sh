# Shared by run.sh, local/run_table_a.sh, local/run_table_b.sh, local/run_rnnt.sh and local/score_dense.sh
# (sourced, not run): the options every recipe shares, option parsing, stage markers (with
# the options they were made with, and each stage's seconds in exp/stage_seconds.tsv),
# the token list, feature statistics, LM, training, decoding, scoring and export.
#
# A recipe sets its own options between its "# ---- options" and "# ---- end of options"
# lines, defines done_marker N and stage_options N, sets last_stage, then sources this
# file and calls `recipe_init "$@"`.
#
# ------------------------------------------------------------------ common options
dir=.                   # working directory for data/, dump/, exp/ (the default run's)
corpus=embedded         # embedded | librispeech
seed=0                  # corpus and training seed
nj=2                    # parallel jobs (synthesis, stats, decoding); 2 = this machine's cores
ngpu=0                  # GPUs for training (0 = CPU)
train_set=train
valid_set=dev
test_sets="dev test test_seen real"
speed_perturb_factors=""  # e.g. "0.9 1.0 1.1": train on a speed-perturbed copy of the train set
                        # (ESPnet's asr.sh way: each factor its own speaker, ids sp0.9-...)
noise_rir=false         # true: generate noises and RIRs (run.sh stage 2) and pass them to the
                        # training's preprocessor (--noise_scp/--rir_scp; the apply probabilities
                        # and SNR range are in the ASR config)
token_type=char         # char | bpe
nbpe=300                # bpe vocabulary size (token_type=bpe)
asr_config=conf/train_asr_ctc.yaml  # the dense model (run.sh stage 5)
asr_tag=""              # its experiment name; default: the config's file name
inference_config=""     # decoding config; default conf/decode_ctc_lm.yaml with the LM, else
                        # conf/decode_ctc.yaml (CTC greedy)
inference_args=""       # extra arguments for asr_inference
stream_inference_config=""  # the chunk-by-chunk decoder's config (asr_inference_streaming: beam,
                        # lm_weight, penalty); default conf/decode_ctc_lm_stream.yaml with the LM
                        # (tuned on dev for the frame-synchronous search), else inference_config
inference_model=valid.loss.ave.pth
inference_tag=""        # decode directory name (decode_<tag>); default: from the decoding config,
                        # the model and the LM (set it to keep decodes with other --inference_args apart)
use_lm=true             # decode with the language model of run.sh stage 6 (false: CTC greedy)
lm_config=conf/train_lm_char.yaml
lm_tag=""               # LM experiment name; default: the LM config's file name
lm_inference_model=valid.loss.ave.pth
results_file=""         # markdown file whose sections are (re)written; default <dir>/RESULTS.md
                        # ("none": no section)
export_format=sparse    # sparse | dense | row | structured (see espnet_omni.bin.export)
bn_calib_utts=200       # the BatchNorm statistics of every searched and exported sub-network are
                        # re-estimated on N training utterances (espnet_omni.search.bn_calib);
                        # 0: keep the checkpoint's
# ------------------------------------------------------------------ end of common options

recipe_name=${recipe_name:-$0}
lib_file=${BASH_SOURCE[0]}

# option_names FILE START END: the option names assigned between two marker lines.
option_names() { sed -n "/^# -* $2/,/^# -* $3/p" "$1" | grep -oE '^[a-z_]+=' | tr -d = | tr '\n' ' '; }

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
  echo "Options of $recipe_name (defaults in $0): $(option_names "$0" options 'end of options')"
  echo "Options shared by every recipe (defaults in local/recipe_lib.sh): $(option_names "$lib_file" 'common options' 'end of common options')"
}

# recipe_init "$@": parse and check the options, install, set every derived path.
recipe_init() {
  valid_options="$(option_names "$0" options 'end of options') $(option_names "$lib_file" 'common options' 'end of common options')"
  command_line="$recipe_name"; [ $# -eq 0 ] || command_line+=$(printf ' %q' "$@")
  while [ $# -gt 0 ]; do
    case $1 in
      -h|--help) usage; exit 0 ;;
      --*)
        local name=${1#--}; name=${name//-/_}
        if ! [[ " $valid_options " == *" $name "* ]]; then
          echo "$recipe_name: unknown option '$1'. Valid options: $(echo $valid_options | sed 's/\([a-z_]*\)/--\1/g')" >&2
          exit 2
        fi
        [ $# -ge 2 ] || { echo "$recipe_name: option '$1' needs a value" >&2; exit 2; }
        printf -v "$name" '%s' "$2"; shift 2 ;;
      *) echo "$recipe_name: unexpected argument '$1' (options are --name value; see --help)" >&2; exit 2 ;;
    esac
  done
  local v
  for v in stage stop_stage; do
    case ${!v} in ''|*[!0-9]*) echo "$recipe_name: --$v '${!v}': expected a stage number 1..$last_stage (see --help)" >&2; exit 2 ;; esac
    if [ "${!v}" -lt 1 ] || [ "${!v}" -gt "$last_stage" ]; then
      echo "$recipe_name: --$v ${!v}: no such stage; valid stages: 1..$last_stage (see --help)" >&2; exit 2
    fi
  done
  if [ "$stage" -gt "$stop_stage" ]; then
    echo "$recipe_name: --stage $stage is after --stop_stage $stop_stage: nothing would run; valid stages: 1..$last_stage" >&2; exit 2
  fi
  case $bn_calib_utts in
    ''|*[!0-9]*) echo "$recipe_name: --bn_calib_utts '$bn_calib_utts': expected a whole number of utterances (0: off)" >&2; exit 2 ;;
  esac
  case $use_lm in true|false) ;; *) echo "$recipe_name: --use_lm must be true or false, got '$use_lm'" >&2; exit 2 ;; esac
  case $noise_rir in true|false) ;; *) echo "$recipe_name: --noise_rir must be true or false, got '$noise_rir'" >&2; exit 2 ;; esac
  case $token_type in char|bpe) ;; *) echo "$recipe_name: --token_type must be char or bpe, got '$token_type'" >&2; exit 2;; esac
  case $corpus in embedded|librispeech) ;; *) echo "$recipe_name: --corpus must be embedded or librispeech, got '$corpus'" >&2; exit 2;; esac
  if [ -z "$inference_config" ]; then
    if $use_lm; then inference_config=conf/decode_ctc_lm.yaml; else inference_config=conf/decode_ctc.yaml; fi
  fi
  if [ -z "$stream_inference_config" ]; then
    if $use_lm; then stream_inference_config=conf/decode_ctc_lm_stream.yaml; else stream_inference_config=$inference_config; fi
  fi

  root=$(cd "$(dirname "$lib_file")/.." && pwd)
  cd "$root"
  tools/install.sh
  python=$root/.venv/bin/python
  export PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH}
  . ./db.sh

  case $dir in *[[:space:]]*)  # ESPnet's shape files and scp lines are space-separated
    echo "$recipe_name: --dir '$dir' holds a space; ESPnet's scp and shape files cannot hold such paths: use a directory without spaces" >&2
    exit 2;; esac
  case $root in *[[:space:]]*)
    echo "$recipe_name: the checkout $root holds a space; ESPnet's scp and shape files cannot hold such paths: clone it to a directory without spaces" >&2
    exit 2;; esac
  mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
  take_recipe_lock
  data=$dir/data; dump=$dir/dump/raw; exp=$dir/exp
  [ -n "$asr_tag" ] || asr_tag=$(config_tag "$asr_config" asr)
  [ -n "$results_file" ] || results_file=$dir/RESULTS.md
  asr_exp=$exp/asr_$asr_tag
  [ -n "$lm_tag" ] || lm_tag=$(config_tag "$lm_config" lm)
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
  # Statistics of another filterbank size than the recipe's 40 mel bins have their own directory.
  if [ -f "$asr_config" ]; then
    local n_mels; n_mels=$(config_value "$asr_config" frontend_conf.n_mels 80)
    [ "$n_mels" = 40 ] || stats_dir=${stats_dir}_mel$n_mels
  fi
  token_opts="--token_type $token_type --token_list $token_dir/tokens.txt"
  [ "$token_type" = bpe ] && token_opts="$token_opts --bpemodel $token_dir/bpe.model"
  # calibration_opts: BatchNorm recalibration of each sub-network on training data (search, export).
  calibration_opts=()
  if [ "$bn_calib_utts" -gt 0 ]; then
    calibration_opts=(--calibration_dir "$dump/$train_set" --calibration_utts "$bn_calib_utts")
  fi
}

# take_recipe_lock: one run of this recipe per --dir at a time (two would run the same stages on
# the same files). The lock is held until the recipe's process ends; the file names its holder.
take_recipe_lock() {
  local lock=$dir/.lock.${recipe_name##*/}
  exec 8>>"$lock"
  if ! flock -n 8; then
    echo "$recipe_name: another $recipe_name is running in --dir $dir ($(cat "$lock" 2>/dev/null || echo "its lock: $lock")); wait for it to finish, or use another --dir" >&2
    exit 1
  fi
  echo "pid $$, started $(date '+%Y-%m-%dT%H:%M:%S')" > "$lock"
}

# config_tag CONFIG KIND: an experiment tag from a config's file name (conf/train_asr_ctc.yaml,
# asr -> ctc).
config_tag() { local t; t=$(basename "$1" .yaml); t=${t#train_}; echo "${t#"$2"_}"; }

# evaluated_already DIR KEY WHAT: true (logged) when DIR/.eval.done holds KEY (the model and options
# DIR's evaluation was made with); otherwise the stale marker goes. mark_evaluated DIR KEY after it.
evaluated_already() {
  if [ -f "$1/.eval.done" ] && [ "$(cat "$1/.eval.done")" = "$2" ]; then
    log "$3 evaluated already with these options ($1/.eval.done); kept"; return 0
  fi
  rm -f "$1/.eval.done"; return 1
}
mark_evaluated() { printf '%s\n' "$2" > "$1/.eval.done"; }

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') ($recipe_name${current_stage:+ stage $current_stage}) $*" >&2; }

# always_run_stages: stages that check each of their outputs themselves (make-style decoding
# and scoring): a done marker does not skip them. Set by the recipe.
always_run_stages=${always_run_stages:-}

# run_stage N: true when stage N is selected and not already done.
run_stage() {
  current_stage=""  # a stage out of the range is not named in the log
  [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ] || return 1
  current_stage=$1; stage_start=$SECONDS
  local marker; marker=$(done_marker "$1")
  if [ -f "$marker" ] && [[ " $always_run_stages " == *" $1 "* ]]; then
    log "starting (outputs already up to date are not redone)"; return 0
  fi
  if [ -f "$marker" ]; then
    # The marker holds the options the stage was made with (empty: made before markers
    # recorded them); other options now would silently reuse outputs made otherwise.
    if [ -s "$marker" ] && [ "$(cat "$marker")" != "$(stage_options "$1")" ]; then
      log "error: $marker was made with other options than this run's:"
      diff <(cat "$marker") <(stage_options "$1") | sed -n 's/^< /    made with: /p; s/^> /    now:       /p' >&2
      log "use another --dir (or another experiment tag), or remove $marker to redo stage $1"
      exit 1
    fi
    log "already done ($marker); skipping"; return 1
  fi
  log "starting"; return 0
}
# print_options NAME...: one 'name=value' line per option (what a marker records).
print_options() { local n; for n in "$@"; do echo "$n=${!n}"; done; }
# finish_stage N: the marker, and the stage's wall seconds appended to exp/stage_seconds.tsv
# (recipe, stage, seconds, finish time: what a run took, stage by stage, as measured).
finish_stage() {
  mkdir -p "$(dirname "$(done_marker "$1")")"; stage_options "$1" > "$(done_marker "$1")"
  mkdir -p "$exp"
  printf '%s\t%s\t%s\t%s\n' "$recipe_name" "$1" "$((SECONDS - stage_start))" "$(date '+%Y-%m-%dT%H:%M:%S')" >> "$exp/stage_seconds.tsv"
  log "done ($((SECONDS - stage_start)) s)"
}

# require_file FILE WHAT COMMAND: stop, naming the missing output and the command that makes it.
require_file() {
  [ -e "$1" ] && return 0
  log "error: $2 is missing: $1 not found; make it first with: $3"
  exit 1
}

# require_default_run: the outputs of the default run (./run.sh stages 1-6) a table recipe starts from.
require_default_run() {
  local make="./run.sh --dir $dir --stop_stage 6 (the default run's data, dense model and LM)"
  [ "$asr_tag" = ctc ] || make+=" with --asr_config $asr_config"
  require_file "$dump/$train_set/wav.scp" "the default run's formatted data (run.sh stage 2)" "$make"
  require_file "$stats_dir/train/feats_stats.npz" "the default run's feature statistics (run.sh stage 4)" "$make"
  require_file "$asr_exp/$inference_model" "the default run's dense model (run.sh stage 5, experiment $asr_exp)" "$make"
  if $use_lm; then
    require_file "$lm_exp/$lm_inference_model" "the default run's language model (run.sh stage 6, experiment $lm_exp)" "$make"
  fi
}

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

# config_value CONFIG KEY[.SUBKEY...] DEFAULT: a value of a YAML config (DEFAULT where it has none).
config_value() {
  $python -c 'import sys, yaml
value = yaml.safe_load(open(sys.argv[1])) or {}
for key in sys.argv[2].split("."):
    value = value.get(key, sys.argv[3]) if isinstance(value, dict) else sys.argv[3]
print(value)' "$@"
}

# config_normalize CONFIG [asr_train args...]: the normalize a training uses: the last --normalize
# of the args, else the config's `normalize:` (ESPnet's default, utterance_mvn, when it has none).
config_normalize() {
  local config=$1 norm="" prev=""; shift
  for a in "$@"; do [ "$prev" = --normalize ] && norm=$a; prev=$a; done
  [ -n "$norm" ] && { echo "$norm"; return; }
  config_value "$config" normalize utterance_mvn
}

# train_asr CONFIG EXP_DIR [asr_train args...]: ASR training (resuming) into EXP_DIR.
train_asr() {
  local config=$1 dir=$2; shift 2
  local aug=()
  $noise_rir && aug=(--noise_scp "$dump/noise_rir/noise.scp" --rir_scp "$dump/noise_rir/rir.scp")
  # The feature statistics of stage 4 are global_mvn's; another normalize (utterance_mvn) takes none.
  local norm=()
  [ "$(config_normalize "$config" "$@")" = global_mvn ] && norm=(--normalize_conf "stats_file=$stats_dir/train/feats_stats.npz")
  run_training espnet_omni.bin.asr_train "$config" "$dir" "${aug[@]}" "${norm[@]}" \
    --train_data_path_and_name_and_type "$dump/$asr_train_set/wav.scp,speech,sound" \
    --train_data_path_and_name_and_type "$dump/$asr_train_set/text,text,text" \
    --valid_data_path_and_name_and_type "$dump/$valid_set/wav.scp,speech,sound" \
    --valid_data_path_and_name_and_type "$dump/$valid_set/text,text,text" \
    --train_shape_file "$stats_dir/train/speech_shape" \
    --train_shape_file "$stats_dir/train/text_shape" \
    --valid_shape_file "$stats_dir/valid/speech_shape" \
    --valid_shape_file "$stats_dir/valid/text_shape" "$@"
}

# set_lm_opts: lm_opts=(--lm_train_config ... --lm_file ...) of the default run's LM when
# decoding with it (--use_lm true), else empty; a missing LM stops naming the stage that makes it.
set_lm_opts() {
  lm_opts=()
  $use_lm || return 0
  require_file "$lm_exp/$lm_inference_model" "the language model" "./run.sh --dir $dir --stage 6 --stop_stage 6 (or --use_lm false)"
  lm_opts=(--lm_train_config "$lm_exp/config.yaml" --lm_file "$lm_exp/$lm_inference_model")
}

# decode_model TRAIN_CONFIG MODEL_FILE DECODE_DIR [SETS [asr_inference args...]]: decode every
# set of SETS (default: the test sets) into DECODE_DIR/<set>/text. A set whose text is
# complete, newer than the model and both configs, and made with the same inference options
# is kept (make-style), so a re-run of an interrupted stage decodes only what is missing.
# Between decode_batch and decode_flush the decodes of several models are only queued, and
# run by one process per job (ESPnet's start-up, ~8 s, paid once per job, not per model).
decode_model() {
  local config=$1 model=$2 ddir=$3 want=${4:-$test_sets}; shift 3; [ $# -eq 0 ] || shift
  local extra=("$@") x out n i j opts lm_model sets=() args queue=$decode_queue
  lm_model=$model
  set_lm_opts
  $use_lm && lm_model=$lm_exp/$lm_inference_model
  opts="inference_config=$inference_config inference_args=$inference_args ${extra[*]} ${lm_opts[*]}"
  opts=${opts//  / }
  for x in $want; do
    out=$ddir/$x
    if [ -f "$out/text" ] && [ "$(wc -l < "$out/text")" = "$(wc -l < "$dump/$x/wav.scp")" ] \
      && [ "$out/text" -nt "$model" ] && [ "$out/text" -nt "$config" ] && [ "$out/text" -nt "$inference_config" ] \
      && [ "$out/text" -nt "$lm_model" ] \
      && { [ ! -f "$out/decode.opts" ] && [ -z "$inference_args" ] && [ ${#extra[@]} -eq 0 ] || [ "$(cat "$out/decode.opts" 2>/dev/null)" = "$opts" ]; }; then
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
  [ -n "$queue" ] || { queue=$(mktemp -d "$ddir/.queue.XXXXXX"); }
  # job j decodes its share of every set: one asr_inference command line per model
  for i in $(seq 0 $((nj - 1))); do
    j=$(printf '%02d' "$i"); args=()
    for x in "${sets[@]}"; do
      [ -f "$ddir/$x/logdir/keys.$j" ] && args+=(--set "$dump/$x/wav.scp" "$ddir/$x/logdir/keys.$j" "$ddir/$x/logdir/out.$j")
    done
    [ ${#args[@]} -gt 0 ] || continue
    # shellcheck disable=SC2086  # inference_args: options split at spaces
    printf '%q ' --ngpu 0 --batch_size 1 --config "$inference_config" --asr_train_config "$config" \
      --asr_model_file "$model" "${args[@]}" "${lm_opts[@]}" $inference_args "${extra[@]}" >> "$queue/jobs.$j"
    echo >> "$queue/jobs.$j"
  done
  printf '%s\t%s\t%s\n' "$ddir" "$opts" "${sets[*]}" >> "$queue/collect"
  [ -n "$decode_queue" ] || { decode_flush "$queue"; rm -rf "$queue"; }
}

# decode_batch / decode_flush: queue the decode_model calls in between, then run them all.
decode_queue=""
decode_batch() { decode_queue=$(mktemp -d "$exp/.decode_queue.XXXXXX"); }
decode_flush() {
  local queue=${1:-$decode_queue} f j pids=() ddir opts sets x out wall
  [ -n "$queue" ] || return 0
  for f in "$queue"/jobs.*; do
    [ -f "$f" ] || continue
    j=${f##*.}
    OMP_NUM_THREADS=1 $python -m espnet_omni.bin.asr_inference --jobs "$f" > "$queue/decode.$j.log" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do
    wait "$p" || { cp "$queue"/decode.*.log "$exp/" 2>/dev/null; log "decoding failed: see $exp/decode.*.log"; exit 1; }
  done
  while IFS=$'\t' read -r ddir opts sets; do
    for x in $sets; do
      out=$ddir/$x
      cat "$out"/logdir/out.*/1best_recog/text | sort > "$out/text.tmp"
      # the set's wall time: its slowest job's own decoding seconds (the jobs ran side by side)
      wall=$(cat "$out"/logdir/out.*/seconds | sort -g | tail -n 1)
      echo "$opts" > "$out/decode.opts"; echo "$wall" > "$out/wall_seconds"; mv "$out/text.tmp" "$out/text"
    done
  done < <(cat "$queue/collect" 2>/dev/null)
  stream_flush "$queue"
  [ "$queue" != "$decode_queue" ] || { rm -rf "$decode_queue"; decode_queue=""; }
}

# stream_decode TRAIN_CONFIG MODEL_FILE OUT_DIR SETS: decode every set of SETS chunk by chunk on
# one thread, as a user streams it (python -m espnet_omni.bin.asr_inference_streaming: audio fed one
# encoder chunk at a time, the streaming encoder's caches carried, --stream_inference_config's beam,
# lm_weight and penalty; with --use_lm true the LM fused into the CTC prefix beam search chunk by
# chunk) -> OUT_DIR/<set>/{text,latency.json,decode.opts}. A set decoded with the same options and
# newer than the model, the configs and the LM is kept (make-style). Between decode_batch and
# decode_flush the sets are queued and streamed one after the other by one process, after the
# queued decode_model jobs (so that nothing else runs while it times the chunks).
stream_decode() {
  local config=$1 model=$2 ddir=$3 want=$4 x out opts lm_model queue=$decode_queue
  set_lm_opts
  lm_model=$model
  $use_lm && lm_model=$lm_exp/$lm_inference_model
  opts="decode_config=$stream_inference_config ${lm_opts[*]}"
  [ -n "$queue" ] || { mkdir -p "$ddir"; queue=$(mktemp -d "$ddir/.queue.XXXXXX"); }
  for x in $want; do
    out=$ddir/$x
    if [ -f "$out/latency.json" ] && [ "$out/latency.json" -nt "$model" ] && [ "$out/latency.json" -nt "$config" ] \
      && [ "$out/latency.json" -nt "$stream_inference_config" ] && [ "$out/latency.json" -nt "$lm_model" ] \
      && [ "$(cat "$out/decode.opts" 2>/dev/null)" = "$opts" ]; then
      log "chunk by chunk $x: kept $out (same options, newer than the model and configs)"
      continue
    fi
    rm -rf "$out"; mkdir -p "$out"
    log "chunk by chunk $x ($(wc -l < "$dump/$x/wav.scp") utts, one thread$($use_lm && echo ', with the LM')) -> $out"
    printf '%q ' --asr_train_config "$config" --asr_model_file "$model" --data_dir "$dump/$x" --output_dir "$out" \
      --num_threads 1 --decode_config "$stream_inference_config" "${lm_opts[@]}" >> "$queue/stream_jobs"
    echo >> "$queue/stream_jobs"
    printf '%s\t%s\n' "$out" "$opts" >> "$queue/stream_collect"
  done
  [ -n "$decode_queue" ] || { stream_flush "$queue"; rm -rf "$queue"; }
}

# stream_flush [QUEUE]: stream the queued sets (decode_flush calls it after its decodes).
stream_flush() {
  local queue=${1:-$decode_queue} out opts
  [ -f "$queue/stream_jobs" ] || return 0
  OMP_NUM_THREADS=1 $python -m espnet_omni.bin.asr_inference_streaming --jobs "$queue/stream_jobs" \
    > "$queue/stream.log" 2>&1 || { cp "$queue/stream.log" "$exp/stream_decode.log"; log "streaming decoding failed: see $exp/stream_decode.log"; exit 1; }
  while IFS=$'\t' read -r out opts; do echo "$opts" > "$out/decode.opts"; done < "$queue/stream_collect"
}

# score_decode EXP_DIR DECODE_NAME CONFIG [RESULTS_FILE [SETS]]: WER/CER tables (scores.json),
# and the section of RESULTS_FILE (default $results_file; "none": no section).
score_decode() {
  local rf=${4:-$results_file} sets=${5:-$test_sets} opt=()
  [ "$rf" = none ] || opt=(--results_file "$rf")
  $python -m espnet_omni.scoring.score --exp "$1" --decode "$2" \
    --dump "$dump" --sets $sets "${opt[@]}" \
    --command "$command_line" --config "$3" --inference_config "$inference_config"
}

# export_model EXP_DIR SUBNET_YAML OUT_DIR [export args...]: a standalone model directory.
export_model() { $python -m espnet_omni.bin.export --jobs <(export_args "$@"); }

# export_args EXP_DIR SUBNET_YAML OUT_DIR [export args...]: export_model's command line, shell-quoted
# on one line (for python -m espnet_omni.bin.export --jobs FILE).
export_args() {
  local d=$1 subnet=$2 out=$3; shift 3
  printf '%q ' --asr_train_config "$d/config.yaml" --asr_model_file "$d/$inference_model" --subnet "$subnet" \
    --format "$export_format" --out_dir "$out" "${calibration_opts[@]}" "$@"
  echo
}

# make_token_list: the token list (and sentencepiece model) of the train set's text (run.sh stage 3).
make_token_list() {
  mkdir -p "$token_dir"
  cut -d' ' -f2- "$dump/$train_set/text" > "$token_dir/train_text.txt"
  local bpe_opts="--token_type char"
  if [ "$token_type" = bpe ]; then
    $python -m espnet2.bin.spm_train --input="$token_dir/train_text.txt" \
      --vocab_size="$nbpe" --model_type=unigram --model_prefix="$token_dir/bpe" \
      --character_coverage=1.0 --input_sentence_size=100000000
    bpe_opts="--token_type bpe --bpemodel $token_dir/bpe.model"
  fi
  $python -m espnet2.bin.tokenize_text $bpe_opts --input "$token_dir/train_text.txt" \
    --output "$token_dir/tokens.txt" --field 1- --cleaner none --g2p none \
    --write_vocabulary true --add_symbol "<blank>:0" --add_symbol "<unk>:1" --add_symbol "<sos/eos>:-1"
  log "$(wc -l < "$token_dir/tokens.txt") tokens in $token_dir/tokens.txt"
}

# collect_asr_stats: shapes and feature mean/var of the train and valid sets (run.sh stage 4).
collect_asr_stats() {
  local n i j p pids x
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
}

# train_lm: the LM text, ESPnet's LM task and the valid set's perplexity (run.sh stage 6).
train_lm() {
  local lm_data lm_src lm_dev lm_stats
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
    --train_shape_file "$lm_stats/train/text_shape" --valid_shape_file "$lm_stats/valid/text_shape" $lm_args
  $python -m espnet2.bin.lm_calc_perplexity --ngpu 0 --batch_size 64 \
    --data_path_and_name_and_type "$lm_dev,text,text" --train_config "$lm_exp/config.yaml" \
    --model_file "$lm_exp/$lm_inference_model" --output_dir "$lm_exp/perplexity_$valid_set" \
    > "$lm_exp/perplexity.log" 2>&1 || { log "perplexity failed: see $lm_exp/perplexity.log"; exit 1; }
  log "LM perplexity on $valid_set: $(cat "$lm_exp/perplexity_$valid_set/ppl")"
}
