#!/usr/bin/env bash
# Corpus locations, read by local/*.sh (ESPnet convention: no absolute paths
# in recipes; override any of these from the environment).

# LibriSpeech root: the directory that holds train-clean-100/, dev-clean/, ...
# (as unpacked from https://www.openslr.org/12). Relative to the repo root.
LIBRISPEECH=${LIBRISPEECH:-downloads/LibriSpeech}
