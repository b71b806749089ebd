# The LibriSpeech settings every recipe of egs/librispeech/asr1 passes (sourced by its
# run.sh, run_table_a.sh and run_table_b.sh): data, tokens, the paper-scale dense model,
# one GPU. Any option given on the command line after them wins.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ls_conf=egs/librispeech/asr1/conf
ls_common=(--dir "$here" --corpus librispeech
  --train_set train_clean_100 --valid_set dev_clean --test_sets "dev_clean test_clean test_other"
  --token_type bpe --nbpe 300 --ngpu 1 --asr_config "$ls_conf/train_asr_ctc.yaml")
cd "$here/../../.."
