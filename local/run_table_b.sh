#!/usr/bin/env bash
# Table B (dual mode, claims C3 and C4): each mode of a dual-mode supernet against the
# same model trained alone, and the supernet fine-tuned from plain and from dual-mode
# wav2vec 2.0 pretraining. Starts from the default run's outputs (./run.sh stages 1-6:
# data, the dense model of row 1, LM) in the same --dir.
#
# Usage:
#   local/run_table_b.sh                                  # all five rows (~2.7 h on 2 CPU cores: pretrainings
#                                                         # ~20 + ~32 min, rows 2-5 ~14 + 24 + 2x26 min, evaluation)
#   local/run_table_b.sh --table_b_rows "1 2 3"           # C3 only: no pretraining (~40 min)
#   local/run_table_b.sh --ssl_untranscribed 0            # pretraining on the training audio alone
#   local/run_table_b.sh --table_b_rows "1 2 3" --dual_config conf/train_asr_dual.yaml --dual_tag dual
#                                                         # rows 3-5 with each mode on half of every batch
#   local/run_table_b.sh --help                           # options and stages
# Resumable: finished stages are skipped, an interrupted training resumes from its last
# checkpoint.
#
# Stages:
#   1  wav2vec 2.0 pretraining on the training audio without its transcripts, plus
#      --ssl_untranscribed N utterances of extra audio (training voices on sentences of no
#      split, synthesized here -> data/untranscribed, dump/raw/untranscribed_<N>): SSL stats
#      -> exp/ssl_stats[_u<N>]/; plain (ssl_config, for row 4) -> exp/ssl_w2v[_u<N>]/; dual-mode
#      (dense full-context + sparse streaming, ssl_dual_config, for row 5) -> exp/ssl_w2v_dual[_u<N>]/;
#      the pretraining summary (with the audio each saw) -> the ssl_pretraining section
#   2  training of the rows (--table_b_rows) that need it: (1) is the dense model of
#      run.sh stage 5; (2) a sparse streaming model alone (stream_config) -> exp/asr_<tag>_stream/;
#      (3) the dual-mode supernet from random init (dual_config) -> exp/asr_<tag>_<dual_tag>/;
#      (4), (5) the same fine-tuned from exp/ssl_w2v/, exp/ssl_w2v_dual/ (--init_param
#      maps the pre-encoder to encoder.embed) -> exp/asr_<tag>_<dual_tag>_w2v[_u<N>]/, ..._w2vdual[_u<N>]/
#   3  both modes of every row (espnet_omni.bin.dual_mode_eval): the full-context network
#      exported and decoded (ESPnet's Speech2Text, --inference_config, with the LM); the streaming one
#      decoded alike (its encoder in streaming mode, as the main job's streaming WER) and chunk by
#      chunk on one thread (CTC greedy: RTF, per-chunk latency) -> <row exp>/table_b/
#   4  Table B -> the table_b section of --results_file (table_b_<x> for --dual_tag dual_<x>)
set -euo pipefail

# ------------------------------------------------------------------ options
stage=1
stop_stage=4
table_b_rows="1 2 3 4 5"                # rows to pretrain, train, decode and tabulate
stream_config=conf/train_asr_stream.yaml  # row 2: a sparse streaming model trained alone
dual_config=conf/train_asr_dual_nosplit.yaml  # rows 3-5: the dual-mode supernet (fine-tuning): both
                                        # modes on every mini-batch (the papers' setting; C3 holds with
                                        # it, not with conf/train_asr_dual.yaml's split batches)
dual_tag=dual_nosplit                   # rows 3-5's experiments: exp/asr_<tag>_<dual_tag>[_w2v|_w2vdual];
                                        # the section: table_b<dual_tag without "dual">
                                        # (another --dual_config beside the first: another tag)
ssl_config=conf/pretrain_w2v.yaml         # row 4's pretraining: plain wav2vec 2.0
ssl_dual_config=conf/pretrain_w2v_dual.yaml  # row 5's pretraining: dual-mode wav2vec 2.0
ssl_args=""                             # extra ssl_train arguments (both pretrainings)
ssl_untranscribed=1300                  # extra untranscribed utterances for the pretraining (embedded
                                        # corpus: training voices on unused sentences, half the train
                                        # set again; 0: train audio only)
stream_args=""                          # streaming options of espnet_omni.bin.dual_mode_eval (e.g.
                                        # "--chunk_size 8"; default: each encoder's streaming config)
# ------------------------------------------------------------------ end of options
recipe_name=local/run_table_b.sh
last_stage=4
stage_options() {
  case $1 in
    1) print_options ssl_config ssl_dual_config ssl_args ssl_untranscribed ;;
    2) print_options stream_config dual_config ;;
  esac
}
done_marker() { echo "$exp/table_b/.table_b_stage$1.rows${table_b_rows// /}$ssl_sfx${dual_tag#dual}.done"; }
. "$(dirname "$0")/recipe_lib.sh"
# row_exp N: the experiment directory of Table B row N.
row_exp() {
  case $1 in
    1) echo "$asr_exp" ;;
    2) echo "${asr_exp}_stream" ;;
    3) echo "${asr_exp}_$dual_tag" ;;
    4) echo "${asr_exp}_${dual_tag}_w2v$ssl_sfx" ;;
    5) echo "${asr_exp}_${dual_tag}_w2vdual$ssl_sfx" ;;
    *) echo "$recipe_name: --table_b_rows: no row '$1' (rows: 1 2 3 4 5)" >&2; exit 2 ;;
  esac
}
recipe_init "$@"
case $ssl_untranscribed in ''|*[!0-9]*) echo "$recipe_name: --ssl_untranscribed '$ssl_untranscribed': expected a whole number of utterances (0: none)" >&2; exit 2 ;; esac
ssl_sfx=""; [ "$ssl_untranscribed" = 0 ] || ssl_sfx=_u$ssl_untranscribed
for r in $table_b_rows; do row_exp "$r" > /dev/null; done
require_default_run
ssl_stats=$exp/ssl_stats$ssl_sfx
ssl_exp() { case $1 in 4) echo "$exp/ssl_w2v$ssl_sfx" ;; 5) echo "$exp/ssl_w2v_dual$ssl_sfx" ;; esac; }
ssl_set=$train_set                        # the pretraining audio: train (+ the untranscribed split)
[ "$ssl_untranscribed" = 0 ] || ssl_set=ssl_${train_set}$ssl_sfx

# prepare_untranscribed: synthesize, format and join the extra audio (once per size).
prepare_untranscribed() {
  local marker=$data/.stage1.$corpus.done extra=$dump/untranscribed$ssl_sfx
  [ -f "$dump/$ssl_set/.done" ] && return 0
  [ "$corpus" = embedded ] || { log "--ssl_untranscribed synthesizes audio of the embedded corpus; with --corpus $corpus point the pretraining at your own audio"; exit 2; }
  require_file "$marker" "the default run's corpus (run.sh stage 1)" "./run.sh --dir $dir --stop_stage 6"
  # the corpus options of the default run, from its stage-1 marker: same plan, same splits
  local size seed_c voices
  size=$(sed -n 's/^size=//p' "$marker"); seed_c=$(sed -n 's/^seed=//p' "$marker"); voices=$(sed -n 's/^train_voices=//p' "$marker")
  log "synthesizing $ssl_untranscribed untranscribed utterances (training voices, unused sentences) -> $data/untranscribed"
  $python -m espnet_omni.corpus.synth --out "$data" --size "${size:-default}" --seed "${seed_c:-0}" \
    --train_voices "${voices:-base}" --nj "$nj" --untranscribed "$ssl_untranscribed"
  $python -m espnet_omni.corpus.format_data --in "$data/untranscribed" --out "$extra" --min_sec 0.5 --max_sec 20
  mkdir -p "$dump/$ssl_set"
  sort "$dump/$train_set/wav.scp" "$extra/wav.scp" > "$dump/$ssl_set/wav.scp"
  touch "$dump/$ssl_set/.done"
}

# write_pretrain_audio SSL_EXP: the audio the pretraining saw (the table's last column).
write_pretrain_audio() {
  local sets="$dump/$train_set"; [ "$ssl_untranscribed" = 0 ] || sets+=" $dump/untranscribed$ssl_sfx"
  $python - "$1/pretrain_audio.json" $sets <<'PY'
import json, sys
from pathlib import Path
from espnet_omni.scoring.tables import audio_seconds
out = [{"name": Path(d).name, "utts": sum(1 for _ in open(Path(d) / "wav.scp")),
        "hours": audio_seconds(Path(d)) / 3600} for d in sys.argv[2:]]
Path(sys.argv[1]).write_text(json.dumps({"sets": out}, indent=1) + "\n")
PY
}
ssl_config_of() { case $1 in 4) echo "$ssl_config" ;; 5) echo "$ssl_dual_config" ;; esac; }

if run_stage 1; then
  for r in $table_b_rows; do
    [ "$r" = 4 ] || [ "$r" = 5 ] || continue
    [ "$ssl_untranscribed" = 0 ] || prepare_untranscribed
    if [ ! -f "$ssl_stats/.done" ]; then
      # Shapes and feature mean/var of the audio alone (wav2vec 2.0 reads no transcripts).
      log "SSL stats -> $ssl_stats"
      $python -m espnet_omni.bin.ssl_train --collect_stats true --ngpu 0 --num_workers 1 \
        --config "$(ssl_config_of "$r")" $token_opts --normalize none --use_preprocessor true \
        --train_data_path_and_name_and_type "$dump/$ssl_set/wav.scp,speech,sound" \
        --valid_data_path_and_name_and_type "$dump/$valid_set/wav.scp,speech,sound" \
        --train_shape_file "$dump/$ssl_set/wav.scp" --valid_shape_file "$dump/$valid_set/wav.scp" \
        --batch_type unsorted --batch_size 8 --output_dir "$ssl_stats" > "$ssl_stats.log" 2>&1 \
        || { log "SSL stats failed: see $ssl_stats.log"; exit 1; }
      touch "$ssl_stats/.done"
    fi
    write_pretrain_audio "$(mkdir -p "$(ssl_exp "$r")" && ssl_exp "$r")"
    run_training espnet_omni.bin.ssl_train "$(ssl_config_of "$r")" "$(ssl_exp "$r")" \
      --normalize_conf "stats_file=$ssl_stats/train/feats_stats.npz" \
      --train_data_path_and_name_and_type "$dump/$ssl_set/wav.scp,speech,sound" \
      --valid_data_path_and_name_and_type "$dump/$valid_set/wav.scp,speech,sound" \
      --train_shape_file "$ssl_stats/train/speech_shape" --valid_shape_file "$ssl_stats/valid/speech_shape" \
      $ssl_args
  done
  ssl_dirs=$(for r in $table_b_rows; do ssl_exp "$r"; done)
  if [ -n "$ssl_dirs" ]; then  # does pretraining learn? (accuracy vs chance, code perplexity)
    $python -m espnet_omni.scoring.ssl_summary $ssl_dirs --results_file "$results_file" --command "$command_line"
  fi
  finish_stage 1
fi

if run_stage 2; then
  for r in $table_b_rows; do
    case $r in
      2) train_asr "$stream_config" "$(row_exp 2)" ;;
      3) train_asr "$dual_config" "$(row_exp 3)" ;;
      4|5)
        m=$(ssl_exp "$r")/$inference_model
        require_file "$m" "row $r's pretrained model" "$recipe_name --dir $dir --stage 1 --stop_stage 1 --table_b_rows $r"
        train_asr "$dual_config" "$(row_exp "$r")" \
          --init_param "$m:preencoder:encoder.embed" "$m:encoder:encoder" ;;
    esac
  done
  finish_stage 2
fi

if run_stage 3; then
  set_lm_opts  # the full-context decoding fuses the LM as every other decoding of the recipes does
  for r in $table_b_rows; do
    d=$(row_exp "$r"); t=$d/table_b; mkdir -p "$t"
    require_file "$d/$inference_model" "row $r's model" "$recipe_name --dir $dir --stage 2 --stop_stage 2 --table_b_rows $r"
    # a row evaluated with these options and this model is not redone (another --table_b_rows
    # selection reuses it); anything else re-evaluates it
    eval_key=$(printf '%s\n' "model=$(cksum < "$d/$inference_model")" "inference_config=$inference_config" \
      "test_sets=$test_sets" "calibration=${calibration_opts[*]}" "stream_args=$stream_args" "export_format=$export_format" \
      "lm=${lm_opts[*]}" "stream_search=true")
    evaluated_already "$t" "$eval_key" "row $r: both modes of $d" && continue
    log "row $r: both modes of $d (log: $t/eval.log)"
    $python -m espnet_omni.bin.dual_mode_eval --asr_train_config "$d/config.yaml" \
      --asr_model_file "$d/$inference_model" --inference_config "$inference_config" \
      --decode_name "decode_$inference_tag" --format "$export_format" --out_dir "$t" \
      $(for x in $test_sets; do printf -- '--data_dir %s ' "$dump/$x"; done) "${calibration_opts[@]}" "${lm_opts[@]}" $stream_args \
      > "$t/eval.log" 2>&1 || { log "evaluation failed: see $t/eval.log"; exit 1; }
    grep -E "sparsity|RTF" "$t/eval.log" | sed 's/^/    /' >&2 || true
    score_decode "$t/export_full" "decode_$inference_tag" "$t/export_full/config.yaml" none
    score_decode "$t/export_stream" "decode_$inference_tag" "$d/config.yaml" none
    score_decode "$t" stream "$d/config.yaml" none
    mark_evaluated "$t" "$eval_key"
  done
  finish_stage 3
fi

if run_stage 4; then
  $python local/table_b.py --rows $table_b_rows \
    --exps $(for r in $table_b_rows; do printf '%s ' "$(row_exp "$r")"; done) \
    --pretrain $(for r in $table_b_rows; do [ -z "$(ssl_exp "$r")" ] || printf '%s=%s ' "$r" "$(ssl_exp "$r")"; done) \
    --decode "decode_$inference_tag" --decode_config "$inference_config" --sets $test_sets --dump "$dump" --section "table_b${dual_tag#dual}" \
    --results_file "$results_file" --command "$command_line"
  finish_stage 4
fi
current_stage=""
log "finished stages $stage..$stop_stage"
