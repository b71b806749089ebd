#!/usr/bin/env bash
# Prepare the embedded offline corpus: synthetic train/dev/test + LibriVox "real".
#
# Usage:
#   local/data.sh                               # default size (~3000 utts, ~2 h)
#   local/data.sh --size tiny --nj 2            # ~40 utts, for smoke tests
#   local/data.sh --size default --seed 1 --out data
#
# Options:
#   --size  tiny|default   preset (train, dev, test) utterance counts
#   --seed  N              same seed -> identical text, voices and wav bytes
#   --nj    N              parallel synthesis processes
#   --out   DIR            output root (relative to the repo root)
#   --train_voices base|all   base (default): the recorded voices as they are; all: +
#                          pseudo-speakers, 60 more espeak variants, wider train ranges
#
# Writes:
#   <out>/{train,dev,test,test_seen,real}/{wav.scp,text,utt2spk,spk2utt,utt2family}
#   <out>/lm_pool.txt         sentences for the LM text (no evaluation or reserved one)
#   <out>/wav/<split>/*.wav   (16 kHz mono 16-bit PCM; resumable)
#
# Needs (Debian): espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k
#   festvox-us-slt-hts sox fortunes wordnet-base pocketsphinx-testdata
set -euo pipefail

size=default
seed=0
nj=2
out=data
train_voices=base

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (local/data.sh) $*" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --size) size=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --nj) nj=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --train_voices) train_voices=$2; shift 2 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "local/data.sh: unknown option $1 (valid: --size --seed --nj --out --train_voices)" >&2; exit 1 ;;
  esac
done

python=${PYTHON:-python}
if [ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ]; then python=.venv/bin/python; fi

log "synthesizing size=${size} seed=${seed} nj=${nj} train_voices=${train_voices} -> ${out}"
"${python}" -m espnet_omni.corpus.synth --out "${out}" --size "${size}" --seed "${seed}" \
  --nj "${nj}" --train_voices "${train_voices}"
log "preparing the LibriVox real test set -> ${out}/real"
"${python}" -m espnet_omni.corpus.real --out "${out}"
log "done"
