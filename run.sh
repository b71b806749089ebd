#!/usr/bin/env bash
# espnet_omni main job: one dual-mode omni supernet -> a Pareto set of models, each decoded
# streaming and full-context, in one run.
#
# Usage:
#   ./run.sh                                   # everything, embedded corpus, default configs
#   ./run.sh --stage 7 --stop_stage 7          # one stage (the supernet's training)
#   ./run.sh --budgets "0.3 0.45 0.6"          # other sizes (fractions of the dense encoder)
#   ./run.sh --size tiny --dir /tmp/x --asr_config conf/train_asr_tiny.yaml \
#            --lm_config conf/train_lm_tiny.yaml --supernet_config conf/train_asr_tiny_dual_omni.yaml
#                                              # the smoke run the tests do
#   ./run.sh --help                            # options and stages
# The paper tables run beside it, from its outputs: local/run_table_a.sh (omni-sparsity),
# local/run_table_b.sh (dual mode); local/score_dense.sh decodes the dense model alone.
#
# Stages (finished ones are skipped on rerun: delete their .done marker to redo one;
# an interrupted training resumes from its last checkpoint):
#   1  data prep: synthesize the embedded corpus (+ the real LibriVox set), or LibriSpeech
#   2  format & filter: validate every wav/transcript, drop too short/long training
#      utterances (a warning counts them; the test sets keep every utterance) -> dump/raw/;
#      speed perturbation (--speed_perturb_factors) -> dump/raw/<train>_sp/;
#      noises and room impulse responses (--noise_rir true) -> dump/raw/noise_rir/
#   3  tokenizer: sentencepiece model (bpe) or characters -> data/token_list/
#   4  collect stats: shapes and feature mean/var -> exp/asr_stats_<token>/
#   5  the dense full-context model (asr_config), the supernet's starting point -> exp/asr_<tag>/
#   6  language model: LM text (the corpus's sentences minus every evaluation set's) -> data/lm/,
#      ESPnet's LM task (lm_config) -> exp/lm_<lm_tag>/, perplexity on the valid set
#   7  the dual-mode omni supernet (supernet_config; dense full-context + sparse streaming
#      sub-networks of many sizes, trained jointly from stage 5) -> exp/asr_<tag>_<supernet_tag>/
#   8  search: the best streaming sub-network for each of --budgets (fraction of the dense
#      encoder's parameters), scored on the valid set -> <supernet>/search/
#   9  export: each sub-network found (streaming BatchNorm statistics) and the dense network
#      (full-context statistics) as standalone models -> <supernet>/pareto/<name>/ (format
#      --export_format) and <name>/dense/ (format dense: stock ESPnet loads it)
#  10  decoding of every export on --pareto_sets: streaming chunk by chunk as a user streams
#      it (the LM fused into the CTC prefix beam search per chunk, one thread: RTF, compute per
#      chunk, first-partial latency on --latency_set) -> <supernet>/pareto/<name>/chunk_by_chunk_*/;
#      full-context with the LM; and, as a check, the streaming-mode encoder output decoded after
#      the utterance with the LM -> <supernet>/pareto/<name>/decode_*/
#  11  the Pareto table (size vs WER, both modes) -> the pareto section of --results_file,
#      and its plot -> <supernet>/pareto/pareto.png (--plot: a copy, e.g. the README's)
#
# Inputs: conf/*.yaml, db.sh (corpus locations). Outputs: <dir>/{data,dump,exp}.
set -euo pipefail

# ------------------------------------------------------------------ options
stage=1                 # first stage to run
stop_stage=11           # last stage to run
size=default            # embedded corpus size: tiny | default
train_voices=base       # embedded corpus train voices: base | all (RESULTS.md `ablation`)
librispeech_subsets="train-clean-100 dev-clean test-clean test-other"
on_error=fail           # format stage: fail on a bad wav/transcript, or drop it (logged count)
min_sec=0.5             # train (and valid, unless it is a test set) utterances shorter than
max_sec=20              # min_sec or longer than max_sec are dropped; test sets never are
asr_args=""             # extra arguments for the dense model's asr_train (stage 5)
lm_args=""              # extra arguments for lm_train (stage 6)
supernet_config=conf/train_asr_dual_omni.yaml  # the dual-mode omni supernet (stage 7)
supernet_tag=dual_omni  # its experiment: exp/asr_<asr_tag>_<supernet_tag>
supernet_args=""        # extra asr_train arguments of the supernet
budgets="0.3 0.4 0.5"   # search budgets, ascending: fractions of the dense encoder's parameters
search_args="--population 8 --generations 3"
                        # espnet_omni.bin.search arguments: <= 32 dev decodes per budget (a shared
                        # cache), each on the whole dev set
pareto_sets="test real" # sets decoded in both modes for the Pareto table
latency_set=test        # set decoded chunk by chunk on one thread (RTF, per-chunk latency)
plot=auto               # a copy of the Pareto plot; auto: docs/pareto.png (the README's) when --dir is
                        # this checkout, none otherwise
# ------------------------------------------------------------------ end of options
recipe_name=./run.sh
last_stage=11
always_run_stages="10 11"
stage_options() {
  case $1 in
    1) print_options corpus size seed train_voices librispeech_subsets ;;
    2) print_options on_error min_sec max_sec train_set valid_set test_sets ;;
    3) print_options token_type nbpe train_set ;;
    4) print_options speed_perturb_factors ;;
    5) print_options asr_config asr_args seed speed_perturb_factors noise_rir ;;
    6) print_options lm_config lm_args ;;
    7) print_options supernet_config supernet_args asr_config ;;
    8) print_options budgets search_args bn_calib_utts valid_set ;;
    9) print_options budgets export_format bn_calib_utts ;;
  esac
}
done_marker() {
  case $1 in
    1) echo "$data/.stage1.$corpus.done" ;;
    2) echo "$dump/.stage2.$corpus.done" ;;
    3) echo "$token_dir/.done" ;;
    4) echo "$stats_dir/.done" ;;
    5) echo "$asr_exp/.stage5.done" ;;
    6) echo "$lm_exp/.stage6.done" ;;
    *) echo "$sup_exp/.stage$1.done" ;;
  esac
}
. "$(dirname "$0")/local/recipe_lib.sh"
recipe_init "$@"
sup_exp=${asr_exp}_$supernet_tag
pareto=$sup_exp/pareto
if [ "$plot" = auto ]; then plot=""; [ "$dir" != "$root" ] || plot=$root/docs/pareto.png; fi
# the budgets: numbers, ascending, at least one (checked before anything runs)
$python -m espnet_omni.scoring.pareto --check_budgets $budgets || exit 2
all_sets=$(echo "$train_set $valid_set $test_sets" | tr ' ' '\n' | awk 'NF && !seen[$0]++' | tr '\n' ' ')

# ------------------------------------------------------------------ 1: data
if run_stage 1; then
  mkdir -p "$dump"
  if [ "$corpus" = embedded ]; then
    local/data.sh --out "$data" --size "$size" --seed "$seed" --nj "$nj" --train_voices "$train_voices"
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
    $python -m espnet_omni.corpus.format_data --in "$data/$x" --out "$dump/$x" --on_error "$on_error" $limits
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
  make_token_list
  finish_stage 3
fi

# ------------------------------------------------------------------ 4: collect stats
if run_stage 4; then
  collect_asr_stats
  finish_stage 4
fi

# ------------------------------------------------------------------ 5: dense model
if run_stage 5; then
  train_asr "$asr_config" "$asr_exp" $asr_args
  finish_stage 5
fi

# ------------------------------------------------------------------ 6: language model
if $use_lm && run_stage 6; then
  train_lm
  finish_stage 6
fi

# ------------------------------------------------------------------ 7: supernet
if run_stage 7; then
  require_file "$asr_exp/$inference_model" "the dense model the supernet starts from" "./run.sh --dir $dir --stage 5 --stop_stage 5"
  train_asr "$supernet_config" "$sup_exp" --init_param "$asr_exp/$inference_model" $supernet_args
  finish_stage 7
fi

# ------------------------------------------------------------------ 8: search
if run_stage 8; then
  require_file "$sup_exp/$inference_model" "the supernet" "./run.sh --dir $dir --stage 7 --stop_stage 7"
  $python -m espnet_omni.bin.search --asr_train_config "$sup_exp/config.yaml" \
    --asr_model_file "$sup_exp/$inference_model" --data_dir "$dump/$valid_set" \
    --budgets $budgets --budget_unit fraction --out_dir "$sup_exp/search" --no_progress \
    "${calibration_opts[@]}" $search_args
  finish_stage 8
fi

# pareto_models: "NAME SUBNET_YAML MODE" per line: the dense network, then one sub-network per budget.
pareto_models() {
  echo "dense $pareto/subnet_dense.yaml full"
  $python -m espnet_omni.scoring.pareto --search_json "$sup_exp/search/search.json" --budgets $budgets
}

# ------------------------------------------------------------------ 9: export
if run_stage 9; then
  mkdir -p "$pareto"
  $python -m espnet_omni.bin.subnet_yaml --asr_train_config "$sup_exp/config.yaml" --sparsity 0 \
    --out "$pareto/subnet_dense.yaml" > /dev/null
  rm -f "$pareto/export.jobs"
  while read -r name subnet mode; do
    log "export $name ($mode statistics) -> $pareto/$name"
    export_args "$sup_exp" "$subnet" "$pareto/$name" --calibration_mode "$mode" \
      --dense_copy "$pareto/$name/dense" >> "$pareto/export.jobs"
  done < <(pareto_models)
  # one process exports them all (ESPnet's start-up paid once)
  $python -m espnet_omni.bin.export --jobs "$pareto/export.jobs" > "$pareto/export.log" 2>&1 \
    || { log "export failed: see $pareto/export.log"; exit 1; }
  finish_stage 9
fi

# ------------------------------------------------------------------ 10: decoding, both modes
if run_stage 10; then
  decode_batch  # every model's decodes queued, then run by one process per job (start-up paid once)
  while read -r name subnet mode; do
    m=$pareto/$name
    require_file "$m/dense/model.pth" "the export of $name" "./run.sh --dir $dir --stage 9 --stop_stage 9"
    # full-context: the stock model as exported; streaming: the same weights in the supernet's
    # encoder (same parameter names), in its streaming mode
    decode_model "$m/dense/config.yaml" "$m/dense/model.pth" "$m/decode_${inference_tag}_full" "$pareto_sets"
    decode_model "$sup_exp/config.yaml" "$m/dense/model.pth" "$m/decode_${inference_tag}_streaming" \
      "$pareto_sets" --encoder_mode streaming
    # what a streaming user gets: chunk by chunk, the LM fused per chunk, one thread (RTF, latency);
    # streamed after the decodes above, alone on the machine
    stream_decode "$sup_exp/config.yaml" "$m/dense/model.pth" "$m/chunk_by_chunk_${inference_tag}" \
      "$(printf '%s\n' $pareto_sets $latency_set | sort -u | tr '\n' ' ')"
  done < <(pareto_models)
  decode_flush
  while read -r name subnet mode; do
    for x in full streaming; do
      score_decode "$pareto/$name" "decode_${inference_tag}_$x" "$pareto/$name/dense/config.yaml" none "$pareto_sets" > /dev/null
    done
  done < <(pareto_models)
  finish_stage 10
fi

# ------------------------------------------------------------------ 11: Pareto table
if run_stage 11; then
  $python -m espnet_omni.scoring.pareto --supernet "$sup_exp" --dense "$asr_exp" --budgets $budgets \
    --decode "decode_$inference_tag" --decode_config "$inference_config" --stream_decode_config "$stream_inference_config" --sets $pareto_sets --latency_set "$latency_set" --dump "$dump" \
    --results_file "$results_file" --command "$command_line" ${plot:+--plot "$plot"}
  finish_stage 11
fi
current_stage=""
log "finished stages $stage..$stop_stage"
