#!/usr/bin/env bash
# Runs the espnet_omni test suite (installing what it needs first).
#
# Usage:
#   ./test.sh                 # the whole suite (~10 min on 2 cores)
#   ./test.sh tests/sparsity  # any pytest arguments
set -euo pipefail
cd "$(dirname "$0")"
tools/install.sh --test
exec .venv/bin/python -m pytest -q --durations=15 "$@"
