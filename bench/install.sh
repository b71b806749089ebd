#!/usr/bin/env bash
# Measures a fresh install (a new venv in an empty cache, as on a fresh machine)
# and writes the numbers into README.md's "install" section.
#
# Usage:
#   bench/install.sh            # ~5 min, ~6 GB in a temporary cache, removed afterwards
#
# Writes: README.md (section between <!-- BEGIN install --> and <!-- END install -->)
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d -t espnet_omni_install.XXXX)  # under $TMPDIR (or the system default)
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
# No pip cache: measure what a fresh machine downloads and unpacks.
PIP_NO_CACHE_DIR=1 ESPNET_OMNI_CACHE=$tmp/cache tools/install.sh --no-apt
secs=$(( $(date +%s) - start ))
gb=$(du -sb "$tmp/cache" | awk '{printf "%.1f", $1 / 1e9}')
start=$(date +%s); ESPNET_OMNI_CACHE=$tmp/cache tools/install.sh --no-apt; again=$(( $(date +%s) - start ))
tools/install.sh >/dev/null  # point .venv back at the usual cache
.venv/bin/python - "$secs" "$gb" "$again" <<'PY'
import datetime, platform, sys
from espnet_omni.scoring.results_file import replace_section
secs, gb, again = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
body = (f"Measured by `bench/install.sh` on {datetime.date.today()} ({platform.machine()}, "
        f"{__import__('os').cpu_count()} cores): a fresh venv took **{secs // 60} min {secs % 60} s** "
        f"and **{gb} GB** of disk (the CUDA build of torch from PyPI dominates; it runs on CPU); "
        f"a second run took {again} s.")
replace_section("README.md", "install", body + "\n")
print(body)
PY
