#!/usr/bin/env bash
# Kaldi data dirs from a local LibriSpeech copy (location: LIBRISPEECH in db.sh).
#
# Usage:
#   local/librispeech_data.sh dev-clean test-clean test-other
#   local/librispeech_data.sh --out data --combine_as train_960 \
#       train-clean-100 train-clean-360 train-other-500
#
# Options:
#   --out DIR          output root (default: data)
#   --combine_as NAME  write all subsets into one dir <out>/NAME
#
# Writes <out>/<subset, - as _>/{wav.scp,text,utt2spk,spk2utt,utt2family}
# (wav.scp points at the .flac files; family = subset name).
set -euo pipefail

out=data
combine_as=
subsets=()

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (local/librispeech_data.sh) $*" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --combine_as) combine_as=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    -*) echo "local/librispeech_data.sh: unknown option $1 (valid: --out --combine_as)" >&2; exit 1 ;;
    *) subsets+=("$1"); shift ;;
  esac
done
if [ ${#subsets[@]} -eq 0 ]; then
  echo "local/librispeech_data.sh: no subsets given (e.g. dev-clean test-other)" >&2
  exit 1
fi

. ./db.sh

python=${PYTHON:-python}
if [ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ]; then python=.venv/bin/python; fi

extra=()
if [ -n "${combine_as}" ]; then extra=(--combine_as "${combine_as}"); fi
log "LibriSpeech root ${LIBRISPEECH}: ${subsets[*]} -> ${out}"
"${python}" -m espnet_omni.corpus.librispeech --root "${LIBRISPEECH}" --out "${out}" \
  "${extra[@]}" "${subsets[@]}"
log "done"
