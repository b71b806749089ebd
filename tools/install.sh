#!/usr/bin/env bash
# Idempotent installer for espnet_omni.
#
# Usage:
#   tools/install.sh            # venv + package + Debian packages (when root/sudo)
#   tools/install.sh --no-apt   # skip the Debian packages (print what is missing)
#
# Writes:
#   .venv -> $ESPNET_OMNI_CACHE/venv-<hash>   (a symlink; hash of requirements.txt,
#            so a second clone on the same machine reuses the
#            6.7 GB venv instead of building it again)
#   the editable install of this checkout into that venv (re-pointed when needed)
#
# A second run finishes in seconds and changes nothing.
# Environment: PYTHON (a python3.12/3.13 to build the venv with),
#              ESPNET_OMNI_CACHE (default ~/.cache/espnet_omni).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)
log() { echo "[install] $*" >&2; }

with_apt=true
for arg in "$@"; do
  case $arg in
    --no-apt) with_apt=false ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "[install] unknown option '$arg'; valid: --no-apt, --help" >&2; exit 2 ;;
  esac
done

# ---------------------------------------------------------------- Debian packages
# What the embedded corpus needs: TTS engines + voices, sox, the text sources, and
# the real-speech check set.
DEB_PKGS=(espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k
          festvox-us-slt-hts sox fortunes wordnet-base pocketsphinx-testdata)
missing=()
for p in "${DEB_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if $with_apt && [ "$(id -u)" = 0 ]; then SUDO=""
  elif $with_apt && command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"
  else SUDO="none"; fi
  if [ "$SUDO" = none ]; then
    log "missing Debian packages: ${missing[*]}"
    log "install them with: sudo apt-get update && sudo apt-get install -y ${missing[*]}"
    log "(the embedded corpus needs them; the Python package installs without them)"
  else
    log "installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

# ---------------------------------------------------------------- Python venv
find_python() {
  local c
  for c in "${PYTHON:-}" python3.12 python3.13 \
           "$HOME"/.pyenv/versions/3.12*/bin/python3.12 /usr/bin/python3.12 /usr/local/bin/python3.12; do
    [ -n "$c" ] || continue
    if "$c" -c 'import sys; sys.exit(0 if (3, 12) <= sys.version_info[:2] <= (3, 13) else 1)' 2>/dev/null; then
      command -v "$c" 2>/dev/null || echo "$c"; return 0
    fi
  done
  return 1
}
py=$(find_python) || {
  log "no Python 3.12/3.13 found (espnet 202611 needs >= 3.12)."
  log "install one (e.g. 'apt-get install python3.12-venv', or pyenv) or set PYTHON=/path/to/python3.12"
  exit 1
}
pyver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
key=$(sha256sum requirements.txt | cut -c1-12)
cache=${ESPNET_OMNI_CACHE:-$HOME/.cache/espnet_omni}
venv=$cache/venv-$key
stamp=$venv/.espnet_omni_complete

if [ ! -f "$stamp" ]; then
  log "building venv $venv with $py (Python $pyver): about 5 min and 6.7 GB the first time"
  rm -rf "$venv"; mkdir -p "$cache"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -r requirements.txt
  touch "$stamp"
fi
if [ "$(readlink .venv 2>/dev/null)" != "$venv" ]; then
  if [ -e .venv ] && [ ! -L .venv ]; then
    log ".venv exists and is not our symlink; move it away first"; exit 1
  fi
  ln -sfn "$venv" .venv
fi

# ---------------------------------------------------------------- editable package
# Re-point the editable install only when it points at another checkout.
where=$(cd / && "$venv/bin/python" -c 'import espnet_omni, os; print(os.path.dirname(os.path.dirname(espnet_omni.__file__)))' 2>/dev/null || true)
if [ "$where" != "$root" ]; then
  log "installing espnet_omni (editable) from $root"
  "$venv/bin/pip" install -q --no-deps --no-build-isolation -e . >/dev/null
fi
log "ready: $(readlink .venv)"
