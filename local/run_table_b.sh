#!/usr/bin/env bash
# Table B (dual mode, claims C3 and C4): each mode of a dual-mode supernet against the
# same model trained alone, and the supernet fine-tuned from plain and from dual-mode
# wav2vec 2.0 pretraining. Starts from the default run's outputs (./run.sh stages 1-6:
# data, the dense model of row 1, LM) in the same --dir.
#
# Usage:
#   local/run_table_b.sh                                  # all five rows (~3 h on 2 CPU cores)
#   local/run_table_b.sh --stage 2 --stop_stage 4 --table_b_rows "1 2 3"   # fine-tuning rows only
#   local/run_table_b.sh --help                           # options and stages
# Resumable: finished stages are skipped, an interrupted training resumes from its last
# checkpoint.
#
# Stages:
#   1  wav2vec 2.0 pretraining on the training audio without its transcripts: SSL stats
#      -> exp/ssl_stats/; plain (ssl_config, for row 4) -> exp/ssl_w2v/; dual-mode (dense
#      full-context + sparse streaming, ssl_dual_config, for row 5) -> exp/ssl_w2v_dual/;
#      the pretraining summary -> the ssl_pretraining section of --results_file
#   2  training of the rows (--table_b_rows) that need it: (1) is the dense model of
#      run.sh stage 5; (2) a sparse streaming model alone (stream_config) -> exp/asr_<tag>_stream/;
#      (3) the dual-mode supernet from random init (dual_config) -> exp/asr_<tag>_dual/;
#      (4), (5) the same fine-tuned from exp/ssl_w2v/, exp/ssl_w2v_dual/ (--init_param
#      maps the pre-encoder to encoder.embed) -> exp/asr_<tag>_dual_w2v/, ..._dual_w2vdual/
#   3  both modes of every row (espnet_omni.bin.dual_mode_eval): the full-context network
#      exported and decoded (ESPnet's Speech2Text, --inference_config), the streaming one
#      decoded chunk by chunk on one thread (RTF, per-chunk latency) -> <row exp>/table_b/
#   4  Table B -> the table_b section of --results_file
set -euo pipefail

# ------------------------------------------------------------------ options
stage=1
stop_stage=4
table_b_rows="1 2 3 4 5"                # rows to pretrain, train, decode and tabulate
stream_config=conf/train_asr_stream.yaml  # row 2: a sparse streaming model trained alone
dual_config=conf/train_asr_dual.yaml      # rows 3-5: the dual-mode supernet (fine-tuning)
ssl_config=conf/pretrain_w2v.yaml         # row 4's pretraining: plain wav2vec 2.0
ssl_dual_config=conf/pretrain_w2v_dual.yaml  # row 5's pretraining: dual-mode wav2vec 2.0
ssl_args=""                             # extra ssl_train arguments (both pretrainings)
stream_args=""                          # streaming options of espnet_omni.bin.dual_mode_eval (e.g.
                                        # "--chunk_size 8"; default: each encoder's streaming config)
# ------------------------------------------------------------------ end of options
recipe_name=local/run_table_b.sh
last_stage=4
stage_options() {
  case $1 in
    1) print_options ssl_config ssl_dual_config ssl_args ;;
    2) print_options stream_config dual_config ;;
  esac
}
done_marker() { echo "$exp/table_b/.table_b_stage$1.rows${table_b_rows// /}.done"; }
. "$(dirname "$0")/recipe_lib.sh"
# row_exp N: the experiment directory of Table B row N.
row_exp() {
  case $1 in
    1) echo "$asr_exp" ;;
    2) echo "${asr_exp}_stream" ;;
    3) echo "${asr_exp}_dual" ;;
    4) echo "${asr_exp}_dual_w2v" ;;
    5) echo "${asr_exp}_dual_w2vdual" ;;
    *) echo "$recipe_name: --table_b_rows: no row '$1' (rows: 1 2 3 4 5)" >&2; exit 2 ;;
  esac
}
recipe_init "$@"
for r in $table_b_rows; do row_exp "$r" > /dev/null; done
require_default_run
ssl_stats=$exp/ssl_stats
ssl_exp() { case $1 in 4) echo "$exp/ssl_w2v" ;; 5) echo "$exp/ssl_w2v_dual" ;; esac; }
ssl_config_of() { case $1 in 4) echo "$ssl_config" ;; 5) echo "$ssl_dual_config" ;; esac; }

if run_stage 1; then
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
  for r in $table_b_rows; do
    d=$(row_exp "$r"); t=$d/table_b; mkdir -p "$t"
    require_file "$d/$inference_model" "row $r's model" "$recipe_name --dir $dir --stage 2 --stop_stage 2 --table_b_rows $r"
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
  finish_stage 3
fi

if run_stage 4; then
  $python local/table_b.py --rows $table_b_rows \
    --exps $(for r in $table_b_rows; do printf '%s ' "$(row_exp "$r")"; done) \
    --pretrain $(for r in $table_b_rows; do [ -z "$(ssl_exp "$r")" ] || printf '%s=%s ' "$r" "$(ssl_exp "$r")"; done) \
    --decode "decode_$inference_tag" --sets $test_sets --dump "$dump" \
    --results_file "$results_file" --command "$command_line"
  finish_stage 4
fi
log "finished stages $stage..$stop_stage"
