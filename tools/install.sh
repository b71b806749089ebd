#!/usr/bin/env bash
# Idempotent installer for espnet_omni.
#
# Usage:
#   tools/install.sh            # venvs + Debian packages (when root/sudo)
#   tools/install.sh --no-apt   # skip the Debian packages (print what is missing)
#   tools/install.sh --test     # also what the tests need (chromium, for the server's page)
#
# Writes:
#   $ESPNET_OMNI_CACHE/venv-<hash>   the heavy dependencies, built once per machine and
#            hash of requirements.txt and shared by every clone (6.7 GB); nothing of
#            a checkout is installed into it
#   .venv    a small venv of this checkout (a directory): its python imports this
#            checkout's code first, then the shared venv's packages (two .pth files),
#            and its bin/ has the shared venv's tools (pip, pytest, torchrun, ...)
#            run by that python. Two clones never move each other's code.
#            An old .venv symlink is replaced; a .venv we did not make is an error.
#
# A second run finishes in seconds and changes nothing.
# Environment: PYTHON (a python3.12/3.13 to build the venv with),
#              ESPNET_OMNI_CACHE (default ~/.cache/espnet_omni).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)
log() { echo "[install] $*" >&2; }

with_apt=true
with_test=false
for arg in "$@"; do
  case $arg in
    --no-apt) with_apt=false ;;
    --test) with_test=true ;;
    -h|--help) sed -n '2,/^set -euo/{/^#/p;}' "$0"; exit 0 ;;
    *) echo "[install] unknown option '$arg'; valid: --no-apt, --test, --help" >&2; exit 2 ;;
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
# apt_prefix: how this user runs apt-get: "" (root), "sudo -n", or "none" (no apt: --no-apt, or no rights).
apt_prefix() {
  if ! $with_apt; then echo none
  elif [ "$(id -u)" = 0 ]; then echo ""
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then echo "sudo -n"
  else echo none; fi
}
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=$(apt_prefix)
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
# The tests' only extra: a headless browser for the streaming server's page (tests/serve).
# Optional: without it that one test skips, saying so.
if $with_test && $with_apt && ! command -v chromium >/dev/null; then
  SUDO=$(apt_prefix)
  if [ "$SUDO" = none ]; then
    log "no chromium (the browser test of tests/serve skips): sudo apt-get install -y chromium"
  else
    log "installing chromium (the browser test of tests/serve)"
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null; } \
      || log "could not install chromium: the browser test of tests/serve skips"
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

# One builder at a time: a second install.sh (another clone's ./test.sh) waits for the first
# and then finds its stamp, instead of deleting the venv the first one is filling.
mkdir -p "$cache"
exec 9>"$venv.lock"
if ! flock -n 9; then
  log "another tools/install.sh is building $venv; waiting for it"
  flock 9
fi
if [ ! -f "$stamp" ]; then
  log "building venv $venv with $py (Python $pyver): about 5 min and 6.7 GB the first time"
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -r requirements.txt
  touch "$stamp"
fi
flock -u 9; exec 9>&-

# ---------------------------------------------------------------- per-checkout .venv
# Made again only when the shared venv or this checkout's path changed (the mark says).
# Built beside .venv and renamed into place, so a concurrent install.sh never sees half of it.
mark=$venv$'\n'$root
if [ "$(cat .venv/.espnet_omni 2>/dev/null)" != "$mark" ]; then
  if [ -e .venv ] && [ ! -L .venv ] && [ ! -f .venv/.espnet_omni ]; then
    log ".venv exists and was not made by tools/install.sh; move it away first"; exit 1
  fi
  log "making .venv: $root, then the packages of $venv"
  info=$("$venv/bin/python" -c 'import os, sys, sysconfig
sp = sysconfig.get_path("purelib"); print(sys._base_executable, os.path.relpath(sp, sys.prefix), sp, sep="\n")')
  { read -r base; read -r rel; read -r sp; } <<<"$info"
  new=$root/.venv.new.$$; rm -rf "$new"; trap 'rm -rf "$new"' EXIT
  "$base" -m venv --without-pip --prompt "${root##*/}" "$new"
  sed -i "s|$new|$root/.venv|g" "$new"/bin/activate* "$new"/pyvenv.cfg
  echo "$root" >"$new/$rel/00-espnet_omni-checkout.pth"  # sorts first: this checkout before the shared venv
  "$base" -c 'import sys; print("import site; site.addsitedir(%r)" % sys.argv[1])' "$sp" >"$new/$rel/01-espnet_omni-shared.pth"
  for f in "$venv"/bin/*; do  # the shared venv's tools: its scripts run by .venv/bin/python, the rest linked
    n=${f##*/}; [ -e "$new/bin/$n" ] && continue
    if grep -qF "$venv/bin/python" <(head -n2 "$f"); then
      sed "1,2s|$venv/bin/python[0-9.]*|$root/.venv/bin/python|" "$f" >"$new/bin/$n"; chmod +x "$new/bin/$n"
    else ln -s "$f" "$new/bin/$n"; fi
  done
  echo "$mark" >"$new/.espnet_omni"
  if [ "$(cat .venv/.espnet_omni 2>/dev/null)" != "$mark" ]; then  # (else a concurrent run was first)
    if [ -L .venv ]; then rm -f .venv; else rm -rf .venv; fi  # the old symlink (not its target), or ours
    mv -T "$new" .venv 2>/dev/null || [ "$(cat .venv/.espnet_omni 2>/dev/null)" = "$mark" ] || {
      log "could not put the new .venv in place"; exit 1; }
  fi
fi
log "ready: .venv ($root on $venv)"
